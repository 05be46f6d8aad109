-- Notification rules: muted posts, and a rate limit on aggregate updates.

-- A post whose author stopped its like notifications (PUT/DELETE /v1/posts/{id}/mute).
-- The notification sink reads it: a muted post's likes are recorded in the actor
-- ledger but do not update its notification.
CREATE TABLE post_mutes (
    post_id  BIGINT PRIMARY KEY REFERENCES posts (post_id),
    muted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Whether a ledger actor is already counted in its (recipient, post) aggregate. The
-- sink records actors at once and folds them in when the fanout flow asks (at most once
-- per LIKES_NOTIFY_MIN_INTERVAL_S per aggregate) and the post is not muted. Rows from
-- before this migration, and rows written by a sink that predates it, are counted
-- already: the default is true, and the sink writes false explicitly.
ALTER TABLE notification_actors ADD COLUMN folded BOOLEAN NOT NULL DEFAULT true;
CREATE INDEX notification_actors_unfolded_idx
    ON notification_actors (recipient_id, post_id) WHERE NOT folded;

-- How often each aggregate row changed (the rate limit made visible).
ALTER TABLE notifications ADD COLUMN updates BIGINT NOT NULL DEFAULT 0;
