-- Erasure of a user (DELETE /v1/users/{user_id}, likes erase-user).

-- Users whose likes were retracted and whose id is being removed from every projection.
-- The like statement refuses them (410) in the same statement that would write the
-- edge; the notification sink never records them as actor or recipient.
CREATE TABLE erased_users (
    user_id   BIGINT PRIMARY KEY CHECK (user_id > 0),
    erased_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- One row per erasure request. progress holds one object per projection (what was
-- removed, what remains); status moves pending -> running -> done | failed, and a
-- failed or interrupted job is taken up again (every step is idempotent).
CREATE TABLE erasure_jobs (
    job_id       UUID PRIMARY KEY,
    user_id      BIGINT NOT NULL CHECK (user_id > 0),
    requested_by TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts     INT NOT NULL DEFAULT 0,
    progress     JSONB NOT NULL DEFAULT '{}',
    error        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ
);
-- at most one open job per user: a repeated request joins it
CREATE UNIQUE INDEX erasure_jobs_open_idx ON erasure_jobs (user_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX erasure_jobs_todo_idx ON erasure_jobs (created_at)
    WHERE status IN ('pending', 'running', 'failed');

-- what an erasure looks up by the erased user's id
CREATE INDEX follows_followee_idx ON follows (followee_id);
CREATE INDEX notification_actors_actor_idx ON notification_actors (actor_id);
