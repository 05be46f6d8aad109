"""Redis hot set: ``likes:hot``, post ids scored by likes in the trailing window.

Guarantee: exactly-once effect under replay: every write is absolute (``ZADD`` of the
current rate, ``ZREM`` on cooling), applied in order in one transaction, so re-applying
a batch leaves the same set. Keyed on ``post_id`` (the member).
"""

from __future__ import annotations

import redis

from core.records import HotChange
from schemas.redis_keys import HOT_KEY
from sinks.base import DEFAULT_RETRY, RetryPolicy
from sinks.redis_store import RedisSink


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


class RedisHotSink(RedisSink[HotChange]):
    """Hot posts into the ``likes:hot`` sorted set."""

    def __init__(self, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__("redis_hot", url, retry)

    def write(self, client: redis.Redis, items: list[HotChange]) -> None:
        write_hot(client, items)
