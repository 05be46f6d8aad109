"""Redis hot set: ``likes:hot``, post ids scored by likes in the trailing window.

Guarantee: exactly-once effect under replay: every write is absolute (``ZADD`` of the
current rate, ``ZREM`` on cooling), so re-applying a batch leaves the same set.
"""

from __future__ import annotations

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from core.records import HotChange
from schemas.redis_keys import HOT_KEY
from sinks.redis_counts import TRANSIENT
from sinks.retry import with_retries


def write_hot(client: redis.Redis, changes: list[HotChange]) -> None:
    """Apply hot/update/cooled changes in order, in one round trip."""
    if not changes:
        return
    pipe = client.pipeline(transaction=True)
    for h in changes:
        if h.state == "cooled":
            pipe.zrem(HOT_KEY, str(h.post_id))
        else:
            pipe.zadd(HOT_KEY, {str(h.post_id): h.rate})
    pipe.execute()


class _RedisHotPartition(StatelessSinkPartition[HotChange]):
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=10)

    def write_batch(self, items: list[HotChange]) -> None:
        with_retries("redis hot", lambda: write_hot(self._client, items), TRANSIENT)

    def close(self) -> None:
        self._client.close()


class RedisHotSink(DynamicSink[HotChange]):
    """Hot posts into the ``likes:hot`` sorted set."""

    def __init__(self, url: str) -> None:
        self._url = url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisHotPartition:
        return _RedisHotPartition(self._url)
