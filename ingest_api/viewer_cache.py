"""Viewer-state cache in Redis: ``likes:viewer:{user_id}`` hash of post_id -> "1"/"0".

Never the only truth: a miss or a Redis failure falls back to the edge store. After a
commit the entry is overwritten; if that write fails the user is marked dirty in this
process, bypasses the cache until the stale hash has been deleted, so the viewer
always reads their own writes.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ingest_api.metrics import VIEWER_CACHE

log = logging.getLogger(__name__)


def viewer_key(user_id: int) -> str:
    """The Redis key holding ``user_id``'s cached like states."""
    return f"likes:viewer:{user_id}"


class ViewerCache:
    """Cache-aside viewer state with read-your-writes under Redis failures."""

    def __init__(self, client: aioredis.Redis, ttl_s: int) -> None:
        self._r = client
        self._ttl = ttl_s
        self._dirty: set[int] = set()

    async def _clean(self, user_id: int) -> bool:
        if user_id not in self._dirty:
            return True
        try:
            await self._r.delete(viewer_key(user_id))
        except RedisError:
            return False
        self._dirty.discard(user_id)
        return True

    async def get_many(self, user_id: int, post_ids: list[int]) -> dict[int, bool]:
        """Cached states for the posts that have one (possibly none); every post asked
        counts in ``likes_api_viewer_cache_total`` as a hit, a miss or a bypass (the
        cache skipped: its state may be stale, or Redis failed)."""
        if not post_ids:
            return {}
        if not await self._clean(user_id):
            VIEWER_CACHE.labels("bypass").inc(len(post_ids))
            return {}
        try:
            values = await self._r.hmget(viewer_key(user_id), [str(p) for p in post_ids])
        except RedisError:
            VIEWER_CACHE.labels("bypass").inc(len(post_ids))
            return {}
        found = {
            p: v in (b"1", "1") for p, v in zip(post_ids, values, strict=True) if v is not None
        }
        VIEWER_CACHE.labels("hit").inc(len(found))
        VIEWER_CACHE.labels("miss").inc(len(post_ids) - len(found))
        return found

    async def put_many(self, user_id: int, states: dict[int, bool]) -> None:
        """Record states read from or written to the edge store."""
        if not states:
            return
        key = viewer_key(user_id)
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={str(p): "1" if v else "0" for p, v in states.items()})
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except RedisError:
            log.warning("viewer cache write failed for user %s; bypassing until cleaned", user_id)
            self._dirty.add(user_id)
