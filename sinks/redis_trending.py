"""Redis trending set: ``likes:trending``, post ids scored by time-decayed likes.

Guarantee: exactly-once effect under replay: scores are absolute (``ZADD``), a forgotten
post is removed (``ZREM``); re-applying a batch leaves the same set.
"""

from __future__ import annotations

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from core.records import TrendOut
from schemas.redis_keys import TRENDING_KEY
from sinks.redis_counts import TRANSIENT
from sinks.retry import with_retries


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


class _TrendingPartition(StatelessSinkPartition[TrendOut]):
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=10)

    def write_batch(self, items: list[TrendOut]) -> None:
        with_retries("redis trending", lambda: write_trending(self._client, items), TRANSIENT)

    def close(self) -> None:
        self._client.close()


class RedisTrendingSink(DynamicSink[TrendOut]):
    """Trending scores into the ``likes:trending`` sorted set."""

    def __init__(self, url: str) -> None:
        self._url = url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TrendingPartition:
        return _TrendingPartition(self._url)
