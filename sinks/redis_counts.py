"""Redis like counts: ``likes:count:{post_id}`` as a decimal string.

Guarantee: exactly-once effect under replay. Each write is an absolute count with its
``seq`` (the sum of edge versions it reflects), applied by a compare-and-set script
only when ``seq`` is above the stored one (``likes:count_seq:{post_id}``). A replayed or
reordered older count is a no-op; counts never move backwards.
"""

from __future__ import annotations

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from core.records import CountUpdate, latest_per_post
from schemas.redis_keys import count_key, count_seq_key
from sinks.retry import with_retries

TRANSIENT = (redis.ConnectionError, redis.TimeoutError)

CAS_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def write_counts(client: redis.Redis, updates: list[CountUpdate], sha: str | None = None) -> int:
    """Apply ``updates`` with compare-and-set in one round trip; return how many applied."""
    if not updates:
        return 0
    sha = sha or client.script_load(CAS_SCRIPT)
    pipe = client.pipeline(transaction=False)
    for u in latest_per_post(updates):
        pipe.evalsha(sha, 2, count_key(u.post_id), count_seq_key(u.post_id), u.count, u.seq)
    return sum(int(r) for r in pipe.execute())


class _RedisCountPartition(StatelessSinkPartition[CountUpdate]):
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=10)
        self._sha: str | None = None

    def _write(self, items: list[CountUpdate]) -> None:
        if self._sha is None:
            self._sha = self._client.script_load(CAS_SCRIPT)
        try:
            write_counts(self._client, items, self._sha)
        except redis.exceptions.NoScriptError:  # Redis restarted and lost its script cache
            self._sha = None
            raise redis.ConnectionError("script cache lost") from None

    def write_batch(self, items: list[CountUpdate]) -> None:
        with_retries("redis counts", lambda: self._write(items), TRANSIENT)

    def close(self) -> None:
        self._client.close()


class RedisCountSink(DynamicSink[CountUpdate]):
    """Counts into Redis, versioned by ``seq``."""

    def __init__(self, url: str) -> None:
        self._url = url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisCountPartition:
        return _RedisCountPartition(self._url)
