-- Users whose viewer cache (likes:viewer:{user} in Redis) may hold a state older than
-- the edge store: an API process committed a transition for them and could not write
-- the cache afterwards. Every API process checks this before trusting a cached state,
-- and the first to delete the Redis hash removes the mark (if nobody marked it since).
CREATE TABLE viewer_cache_stale (
    user_id   BIGINT PRIMARY KEY,
    marked_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
