-- The backfill reads a chunk of posts' edges in post order (flows/backfill_chunks.py):
-- state, version, key_hash and user_id of every edge. From (post_id, state) alone each
-- edge cost a heap page visit, and the heap is in write order, so a post's edges are
-- scattered over it: 6,400 edges of a 1,000-post chunk touched 5,500 pages (2 million
-- edge benchmark). Carrying those columns in the (post_id, state) index turns that into
-- an index-only scan wherever the visibility map allows (autovacuum keeps it so for all
-- but recently written pages): 21 -> 11.5 ms per chunk statement, measured. The index
-- stays one of the four an edge write maintains; its entries get 20 bytes longer. The
-- liked-count reads that used (post_id, state) use it as before.
--
-- CREATE INDEX without CONCURRENTLY (migrations run in transactions): writes wait while
-- it builds, 1.4 s for 2 million edges here; on a large production table, build it
-- CONCURRENTLY by hand first under this name, and this file then only drops the old one.
CREATE INDEX IF NOT EXISTS post_likes_post_state_cover_idx
    ON post_likes (post_id, state) INCLUDE (version, key_hash, user_id);
DROP INDEX IF EXISTS post_likes_post_state_idx;
