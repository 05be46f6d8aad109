"""Like counts for reads: the Redis projection, else the compacted Postgres one.

Counts are eventually consistent; an absent Redis key means no likes recorded.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from psycopg import AsyncConnection
from redis.exceptions import RedisError

from schemas.redis_keys import count_key

log = logging.getLogger(__name__)


async def _from_postgres(conn: AsyncConnection, post_ids: list[int]) -> dict[int, int]:
    cur = await conn.execute(
        "SELECT post_id, like_count FROM post_like_counts WHERE post_id = ANY(%s)", (post_ids,)
    )
    return {int(p): int(c) for p, c in await cur.fetchall()}


async def like_counts(
    r: aioredis.Redis, conn: AsyncConnection, post_ids: list[int]
) -> dict[int, int]:
    """The count of every post in ``post_ids``."""
    unique = list(dict.fromkeys(post_ids))
    try:
        values = await r.mget([count_key(p) for p in unique])
        return {p: int(v) if v is not None else 0 for p, v in zip(unique, values, strict=True)}
    except RedisError:
        log.warning("redis unavailable for counts; reading post_like_counts")
    found = await _from_postgres(conn, unique)
    return {p: found.get(p, 0) for p in unique}
