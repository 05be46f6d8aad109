"""Redis trending set: ``likes:trending``, post ids scored by time-decayed likes.

Guarantee: exactly-once effect under replay: scores are absolute (``ZADD``), a forgotten
post is removed (``ZREM``), applied in order; re-applying a batch leaves the same set.
Keyed on ``post_id`` (the member).
"""

from __future__ import annotations

import redis

from core.records import TrendOut
from schemas.redis_keys import TRENDING_KEY
from sinks.base import DEFAULT_RETRY, RetryPolicy
from sinks.redis_store import RedisSink


def write_trending(client: redis.Redis, items: list[TrendOut]) -> None:
    """Apply scores and removals in order, in one round trip."""
    if not items:
        return
    pipe = client.pipeline(transaction=False)
    for post_id, score in items:
        if score is None:
            pipe.zrem(TRENDING_KEY, str(post_id))
        else:
            pipe.zadd(TRENDING_KEY, {str(post_id): score})
    pipe.execute()


class RedisTrendingSink(RedisSink[TrendOut]):
    """Trending scores into the ``likes:trending`` sorted set."""

    def __init__(self, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__("redis_trending", url, retry)

    def write(self, client: redis.Redis, items: list[TrendOut]) -> None:
        write_trending(client, items)
