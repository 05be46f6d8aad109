-- The follow graph: an edge like a like is, read by the API only (no outbox, no events).
-- The primary key answers "does F follow U" (liked_by probes it once per candidate
-- liker) and makes a follow idempotent; follows_follower_recent_idx serves
-- GET /v1/users/{user_id}/following newest first, keyset-paginated, index-only.
CREATE TABLE follows (
    follower_id BIGINT NOT NULL CHECK (follower_id > 0),
    followee_id BIGINT NOT NULL CHECK (followee_id > 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_follower_recent_idx ON follows (follower_id, created_at, followee_id);
