-- Ledger of who has been notified about what: its primary key makes a replayed like
-- event a no-op for notifications (the aggregate in `notifications` only grows by
-- actors this ledger had not seen).
CREATE TABLE notification_actors (
    recipient_id BIGINT NOT NULL,
    post_id      BIGINT NOT NULL,
    actor_id     BIGINT NOT NULL,
    liked_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (recipient_id, post_id, actor_id)
);
