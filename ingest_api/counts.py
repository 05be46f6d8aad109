"""Like counts for reads: in-process cache, then Redis, then the compacted Postgres projection.

Order of the read path (the seed design's cache, counter service, compacted store):

1. :class:`CountCache`, this process's memory: every count read in the last
   ``count_cache_ttl_s`` (at most 1 s), for at most ``count_cache_size`` posts, least
   recently used first out. A viral post that is in every feed is then read from Redis
   about once a second per API process instead of once per feed request, so its key is
   not one hot spot on one Redis shard. Counts are eventually consistent anyway; this
   adds at most the TTL to their lag (the caller's own ``viewer_liked`` is not cached).
2. Redis ``likes:count:{post_id}`` with one ``MGET`` for the posts the cache lacks.
3. ``post_like_counts`` for the keys Redis lacks (lost in a Redis failure, evicted, or
   not yet written back by ``likes backfill``), or for all of them when Redis is down.
   A post neither store has has no likes recorded: 0.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import redis.asyncio as aioredis
from psycopg import AsyncConnection
from redis.exceptions import RedisError

from ingest_api.metrics import COUNT_CACHE
from schemas.redis_keys import count_key

log = logging.getLogger(__name__)


class CountCache:
    """Counts by post id for ``ttl_s`` seconds, at most ``max_size`` of them (LRU).

    Eviction is explicit: an entry older than ``ttl_s`` is dropped when read, and a put
    beyond ``max_size`` drops the least recently used entries. ``ttl_s`` or ``max_size``
    of 0 turns the cache off. Single-threaded (one event loop) by design: no locks.
    """

    def __init__(
        self, ttl_s: float, max_size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_s
        self._max = max_size
        self._clock = clock
        self._entries: OrderedDict[int, tuple[float, int]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether the cache keeps anything."""
        return self._ttl > 0 and self._max > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, post_ids: list[int]) -> dict[int, int]:
        """The fresh cached counts among ``post_ids`` (possibly none)."""
        if not self._entries:
            return {}
        now, found = self._clock(), {}
        for p in post_ids:
            entry = self._entries.get(p)
            if entry is None:
                continue
            if entry[0] <= now:
                del self._entries[p]
                continue
            self._entries.move_to_end(p)
            found[p] = entry[1]
        return found

    def put_many(self, counts: dict[int, int]) -> None:
        """Remember ``counts`` as read now."""
        if not self.enabled:
            return
        expires = self._clock() + self._ttl
        for p, c in counts.items():
            self._entries[p] = (expires, c)
            self._entries.move_to_end(p)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


async def _from_postgres(conn: AsyncConnection, post_ids: list[int]) -> dict[int, int]:
    cur = await conn.execute(
        "SELECT post_id, like_count FROM post_like_counts WHERE post_id = ANY(%s)", (post_ids,)
    )
    return {int(p): int(c) for p, c in await cur.fetchall()}


async def _from_stores(
    r: aioredis.Redis, conn: AsyncConnection, post_ids: list[int]
) -> dict[int, int]:
    """Redis first; ``post_like_counts`` for what Redis lacks; 0 where neither has it."""
    found: dict[int, int] = {}
    try:
        values = await r.mget([count_key(p) for p in post_ids])
        found = {p: int(v) for p, v in zip(post_ids, values, strict=True) if v is not None}
    except RedisError:
        log.warning("redis unavailable for counts; reading post_like_counts")
    missing = [p for p in post_ids if p not in found]
    if missing:
        compacted = await _from_postgres(conn, missing)
        found.update({p: compacted.get(p, 0) for p in missing})
    return found


async def like_counts(
    r: aioredis.Redis,
    conn: AsyncConnection,
    post_ids: list[int],
    cache: CountCache | None = None,
) -> dict[int, int]:
    """The count of every post in ``post_ids``, through ``cache`` when given."""
    unique = list(dict.fromkeys(post_ids))
    hits = cache.get_many(unique) if cache is not None else {}
    missing = [p for p in unique if p not in hits]
    if cache is not None and cache.enabled:
        COUNT_CACHE.labels("hit").inc(len(hits))
        COUNT_CACHE.labels("miss").inc(len(missing))
    if not missing:
        return hits
    fetched = await _from_stores(r, conn, missing)
    if cache is not None:
        cache.put_many(fetched)
    return {**hits, **fetched}
