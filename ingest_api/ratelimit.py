"""Per-user rate limit on mutations: a fixed window counter in Redis.

Fails open: when Redis is unreachable the like path is not blocked by its limiter.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ingest_api.problems import ProblemError

log = logging.getLogger(__name__)


class RateLimiter:
    """At most ``limit`` mutations per user per ``window_s`` seconds."""

    def __init__(self, client: aioredis.Redis, *, limit: int, window_s: int) -> None:
        self._r = client
        self._limit = limit
        self._window = window_s

    async def check(self, user_id: int) -> None:
        """Count one request; raise 429 with ``Retry-After`` past the limit."""
        now = time.time()
        window = int(now // self._window)
        key = f"likes:rl:{user_id}:{window}"
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, self._window * 2)
                count, _ = await pipe.execute()
        except RedisError:
            log.warning("rate limiter unavailable; allowing request")
            return
        if int(count) > self._limit:
            retry = max(1, int((window + 1) * self._window - now + 0.999))
            raise ProblemError(429, "too many requests", headers={"Retry-After": str(retry)})
