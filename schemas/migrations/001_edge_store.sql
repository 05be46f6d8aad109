-- Edge store: the source of truth for likes, its transactional outbox and
-- the API's idempotency records. Applied once, recorded in schema_migrations.

CREATE TABLE posts (
    post_id    BIGINT PRIMARY KEY CHECK (post_id > 0),
    author_id  BIGINT NOT NULL CHECK (author_id > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ
);

CREATE TABLE post_likes (
    post_id    BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    state      VARCHAR(16) NOT NULL CHECK (state IN ('liked', 'unliked')),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version    BIGINT NOT NULL CHECK (version > 0),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX post_likes_user_recent_idx ON post_likes (user_id, updated_at);
CREATE INDEX post_likes_post_recent_idx ON post_likes (post_id, updated_at);
CREATE INDEX post_likes_post_state_idx ON post_likes (post_id, state);

-- Debezium's Outbox Event Router reads inserts of this table from the WAL.
-- payload is the event exactly as consumers receive it; edge_key
-- ("post_id:user_id") is the Kafka message key, so one edge's events share a
-- partition while one post's events spread over all partitions.
CREATE TABLE like_outbox (
    event_id        UUID PRIMARY KEY,
    aggregate_type  TEXT NOT NULL DEFAULT 'like',
    edge_key        TEXT NOT NULL,
    post_id         BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    action          VARCHAR(32) NOT NULL,
    edge_version    BIGINT NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    idempotency_key TEXT,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX like_outbox_created_idx ON like_outbox (created_at);

-- Debezium heartbeat target: keeps the replication slot advancing when the
-- outbox is idle, so retained WAL stays bounded.
CREATE TABLE cdc_heartbeat (
    id      INT PRIMARY KEY,
    beat_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE idempotency_keys (
    user_id      BIGINT NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    fingerprint  TEXT NOT NULL,
    status_code  INT,
    response     JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Compacted count projection, written by the counts flow. seq is the sum of
-- edge versions the count reflects: monotone, so replays never regress it.
CREATE TABLE post_like_counts (
    post_id    BIGINT PRIMARY KEY,
    like_count BIGINT NOT NULL,
    seq        BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Like notifications, one row per (recipient, post) aggregate.
CREATE TABLE notifications (
    recipient_id BIGINT NOT NULL,
    post_id      BIGINT NOT NULL,
    actor_ids    BIGINT[] NOT NULL DEFAULT '{}',
    total_actors BIGINT NOT NULL DEFAULT 0,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (recipient_id, post_id)
);
CREATE INDEX notifications_recent_idx ON notifications (recipient_id, updated_at DESC, post_id DESC);
