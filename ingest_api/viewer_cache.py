"""Viewer-state cache in Redis: ``likes:viewer:{user_id}`` hash of post_id ->
``"<edge version>:<1|0>"``.

Guarantees, with any number of API processes sharing Redis and the edge store:

* Never the only truth: a miss or a Redis failure falls back to the edge store.
* A cached state never goes back in time: an entry is replaced only by one of a higher
  edge version, so a read that fetched an older state from the edge store cannot
  overwrite the state a concurrent like just wrote.
* Read-your-writes through Redis failures: when a committed transition cannot be
  written to the cache, the user is marked stale in the edge store
  (``viewer_cache_stale``) before the request is answered; every process checks that
  mark before trusting a cached state, bypasses the cache while it stands, and the
  first to delete the user's hash clears it. Only if the edge store fails too in that
  moment does the mark fall back to this process alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from ingest_api.db import EdgeStoreUnavailable, connection
from ingest_api.metrics import VIEWER_CACHE

log = logging.getLogger(__name__)

CachedState = tuple[int, bool]  # (edge version, liked); an edge never written is (0, False)

# KEYS: users' hashes; ARGV[1]: their TTL, then per key: how many fields, then
# (post, "version:flag") pairs; a field is set unless the hash holds that post at a
# version at least as high
_PUT_NEWER = """
local a = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  for i = a + 1, a + 2 * n, 2 do
    local old = redis.call('HGET', KEYS[k], ARGV[i])
    local have = old and tonumber(string.match(old, '^(%d+):')) or -1
    if have < tonumber(string.match(ARGV[i + 1], '^(%d+):')) then
      redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('EXPIRE', KEYS[k], ARGV[1])
  a = a + 1 + 2 * n
end
return 1
"""

_MARK_SQL = """INSERT INTO viewer_cache_stale (user_id)
SELECT DISTINCT unnest(%s::bigint[])
ON CONFLICT (user_id) DO UPDATE SET marked_at = clock_timestamp()"""
_MARKED_SQL = "SELECT marked_at FROM viewer_cache_stale WHERE user_id = %s"
_UNMARK_SQL = "DELETE FROM viewer_cache_stale WHERE user_id = %s AND marked_at = %s"


def viewer_key(user_id: int) -> str:
    """The Redis key holding ``user_id``'s cached like states."""
    return f"likes:viewer:{user_id}"


def _decode(value: bytes | str | None) -> bool | None:
    """The liked flag of a cached entry; None for none (or one of an older format)."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    _, sep, flag = text.partition(":")
    return flag == "1" if sep else None


class ViewerCache:
    """Cache-aside viewer state, versioned, with a shared stale mark."""

    def __init__(self, client: aioredis.Redis, pool: AsyncConnectionPool, ttl_s: int) -> None:
        self._r = client
        self._pool = pool
        self._ttl = ttl_s
        self._put_script = client.register_script(_PUT_NEWER)
        self._dirty: set[int] = set()  # marks the edge store could not take

    async def get_many(
        self, conn: AsyncConnection, user_id: int, post_ids: list[int]
    ) -> dict[int, bool]:
        """Cached states for the posts that have one (possibly none); every post asked
        counts in ``likes_api_viewer_cache_total`` as a hit, a miss or a bypass (the
        cache skipped: the user's states may be stale, or Redis failed). ``conn`` is
        the request's edge-store connection: the stale mark is read there, and only
        when something cached would be used."""
        if not post_ids:
            return {}
        if user_id in self._dirty and not await self._clean(conn, user_id, None):
            VIEWER_CACHE.labels("bypass").inc(len(post_ids))
            return {}
        try:
            values = await self._r.hmget(viewer_key(user_id), [str(p) for p in post_ids])
        except RedisError:
            VIEWER_CACHE.labels("bypass").inc(len(post_ids))
            return {}
        found = {
            p: liked
            for p, v in zip(post_ids, values, strict=True)
            if (liked := _decode(v)) is not None
        }
        if found:
            marked = await (await conn.execute(_MARKED_SQL, (user_id,))).fetchone()
            if marked is not None:
                await self._clean(conn, user_id, marked[0])
                VIEWER_CACHE.labels("bypass").inc(len(post_ids))
                return {}
        VIEWER_CACHE.labels("hit").inc(len(found))
        VIEWER_CACHE.labels("miss").inc(len(post_ids) - len(found))
        return found

    async def _clean(self, conn: AsyncConnection, user_id: int, marked_at: datetime | None) -> bool:
        """Delete the user's hash, then the mark seen (unless marked again since)."""
        try:
            await self._r.delete(viewer_key(user_id))
        except RedisError:
            return False
        if marked_at is not None:
            await conn.execute(_UNMARK_SQL, (user_id, marked_at))
        self._dirty.discard(user_id)
        return True

    async def put_many(
        self, user_id: int, states: dict[int, CachedState], *, committed: bool = False
    ) -> None:
        """Record states read from or (``committed``) just committed to the edge store,
        each with its edge version. If Redis fails after a commit, the user is marked
        stale before this returns; a failed fill from a read leaves nothing stale."""
        await self._put({user_id: states}, committed=committed)

    async def put_committed(self, transitions: Iterable[tuple[int, int, int, bool]]) -> None:
        """Record committed ``(user, post, version, liked)`` states of many users in one
        Redis call; if it fails, every user of them is marked stale before this returns."""
        by_user: dict[int, dict[int, CachedState]] = {}
        for user, post, version, liked in transitions:
            by_user.setdefault(user, {})[post] = (version, liked)
        await self._put(by_user, committed=True)

    async def _put(self, states: dict[int, dict[int, CachedState]], *, committed: bool) -> None:
        users = [u for u, posts in states.items() if posts]
        if not users:
            return
        args: list[str | int] = [self._ttl]
        for user in users:
            args.append(len(states[user]))
            for post, (version, liked) in states[user].items():
                args += [str(post), f"{version}:{1 if liked else 0}"]
        try:
            await self._put_script(keys=[viewer_key(u) for u in users], args=args)
        except RedisError:
            if committed:
                log.warning("viewer cache write failed for users %s; marking them stale", users)
                await self.mark_stale(users)

    async def forget(self, user_id: int, post_id: int) -> None:
        """Drop one cached state (a transition whose outcome is unknown); if Redis
        fails, this process bypasses the user's cache until it can delete the hash."""
        try:
            await self._r.hdel(viewer_key(user_id), str(post_id))
        except RedisError:
            self._dirty.add(user_id)

    async def mark_stale(self, user_ids: list[int]) -> None:
        """Make every process bypass these users' cached states until their hash is gone."""
        try:
            async with connection(self._pool) as conn:
                await conn.execute(_MARK_SQL, (user_ids,))
        except EdgeStoreUnavailable:
            log.error("viewer cache of users %s marked stale in this process only", user_ids)
            self._dirty.update(user_ids)
