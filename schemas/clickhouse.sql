-- Analytics store (database `likes`). Analysts query the views; the *_raw / *_parts
-- tables absorb replays (ReplacingMergeTree) and are an implementation detail.
CREATE DATABASE IF NOT EXISTS likes;

CREATE TABLE IF NOT EXISTS likes.like_events_raw (
    event_id     UUID,
    action       LowCardinality(String),
    post_id      UInt64,
    user_id      UInt64,
    edge_version UInt64,
    occurred_at  DateTime64(6, 'UTC'),
    delta        Int8
) ENGINE = ReplacingMergeTree
ORDER BY (post_id, event_id);

CREATE VIEW IF NOT EXISTS likes.like_events AS
SELECT event_id, action, post_id, user_id, edge_version, occurred_at, delta
FROM likes.like_events_raw FINAL;

CREATE TABLE IF NOT EXISTS likes.post_like_window_parts (
    post_id      UInt64,
    window_start DateTime64(3, 'UTC'),
    window_end   DateTime64(3, 'UTC'),
    part         String,
    likes        UInt64,
    unlikes      UInt64,
    version      UInt64,
    -- edge transitions the row accounts for (likes + unlikes, except on repair rows,
    -- which carry reconcile's correction of it): its sum per post is compared with the
    -- edge store's sum(version), so reconcile can judge a post at a consistent point
    transitions  Int64 DEFAULT toInt64(likes) + toInt64(unlikes)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (post_id, window_start, part);

-- stores created before the column existed
ALTER TABLE likes.post_like_window_parts
    ADD COLUMN IF NOT EXISTS transitions Int64 DEFAULT toInt64(likes) + toInt64(unlikes);

CREATE VIEW IF NOT EXISTS likes.post_like_windows AS
SELECT post_id, window_start, window_end, l AS likes, u AS unlikes,
       toInt64(l) - toInt64(u) AS net
FROM (
    SELECT post_id, window_start, any(window_end) AS window_end,
           sum(likes) AS l, sum(unlikes) AS u
    FROM likes.post_like_window_parts FINAL
    GROUP BY post_id, window_start
);

CREATE TABLE IF NOT EXISTS likes.hot_post_episodes (
    post_id       UInt64,
    became_hot_at DateTime64(3, 'UTC'),
    cooled_at     Nullable(DateTime64(3, 'UTC')),
    peak_rate     UInt64,
    version       UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (post_id, became_hot_at);

CREATE VIEW IF NOT EXISTS likes.hot_posts AS
SELECT post_id, became_hot_at, cooled_at, peak_rate
FROM likes.hot_post_episodes FINAL;

-- Users erased (likes erase-user): the like_events writer stores their events with
-- user_id 0, and the erasure rewrote their earlier rows the same way, so a replay of
-- old Kafka events cannot bring an erased id back. Windows and hot posts hold no ids.
CREATE TABLE IF NOT EXISTS likes.erased_users (
    user_id   UInt64,
    erased_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY user_id;
