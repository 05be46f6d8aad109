-- The backfill rebuilds notifications per post (sinks/postgres_notifications.py), and
-- both tables were keyed by recipient first, with nothing by post: every rebuild batch
-- read all of `notification_actors` (one row per actor and post ever liked: 1.4 million
-- on the working stack) and all of `notifications`, several times. With these indexes a
-- batch reads the rows of its own posts. A live ledger insert maintains one more index
-- entry (the ledger already carries the primary key and the actor index).
--
-- CREATE INDEX without CONCURRENTLY (migrations run in transactions): ledger writes wait
-- while it builds, about a second per million rows; on a large production table, build
-- them CONCURRENTLY by hand first under these names.
CREATE INDEX IF NOT EXISTS notification_actors_post_idx ON notification_actors (post_id);
CREATE INDEX IF NOT EXISTS notifications_post_idx ON notifications (post_id);
