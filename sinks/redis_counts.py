"""Redis like counts: ``likes:count:{post_id}`` as a decimal string.

Guarantee: exactly-once effect under replay. Each write is an absolute count with its
``seq`` (the sum of edge versions it reflects), applied by a compare-and-set script
only when ``seq`` is above the stored one (``likes:count_seq:{post_id}``). A replayed or
reordered older count is a no-op; counts never move backwards. Keyed on ``post_id``.
The one exception is a forced count (the counts flow adopted a backfill's truth for the
post, ``CountUpdate.forced``): it is written with its ``seq`` whatever is stored, since
it corrects a ``seq`` the flow had inflated; a replay of the flow re-emits it in order.

Freshness (contract section 7): for every count the sink makes visible, the histogram
``likes_freshness_seconds`` observes now minus the newest ``occurred_at`` (outbox commit
time) of the events behind it (``CountUpdate.newest_ms``; updates without it, and
replayed ones that change nothing, are not observed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from prometheus_client import Histogram

from core.records import CountUpdate, latest_per_post
from schemas.redis_keys import count_key, count_seq_key
from sinks import redis_store
from sinks.base import DEFAULT_RETRY, RetryPolicy, StoreSink

CAS_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
# a rebuild (``likes backfill``) also corrects a value at the same seq: equal positions
# must hold equal counts, so a different or missing count there is damage, not news
REBUILD_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '-1')
local seq = tonumber(ARGV[2])
if seq > cur or (seq == cur and redis.call('GET', KEYS[1]) ~= ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

FORCE_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

FRESHNESS_SECONDS = Histogram(
    "likes_freshness_seconds",
    "Outbox commit (event occurred_at) to the Redis count visible",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)


def apply_counts(
    client: redis.Redis, updates: list[CountUpdate], sha: str | None = None
) -> list[CountUpdate]:
    """Apply ``updates`` with compare-and-set in one round trip (forced ones written as
    they are); return those applied."""
    if not updates:
        return []
    sha = sha or client.script_load(CAS_SCRIPT)
    latest = latest_per_post(updates)
    pipe = client.pipeline(transaction=False)
    for u in latest:
        keys = (count_key(u.post_id), count_seq_key(u.post_id))
        if u.forced:
            pipe.eval(FORCE_SCRIPT, 2, *keys, u.count, u.seq)
        else:
            pipe.evalsha(sha, 2, *keys, u.count, u.seq)
    return [u for u, r in zip(latest, pipe.execute(), strict=True) if int(r)]


def write_counts(client: redis.Redis, updates: list[CountUpdate], sha: str | None = None) -> int:
    """Apply ``updates`` with compare-and-set in one round trip; return how many applied."""
    return len(apply_counts(client, updates, sha))


def observe_freshness(applied: list[CountUpdate]) -> None:
    """Freshness of each count just made visible (one clock read per batch)."""
    now_ms = time.time() * 1000
    for u in applied:
        if u.newest_ms > 0:
            FRESHNESS_SECONDS.observe(max(0.0, now_ms - u.newest_ms) / 1000)


@dataclass
class CasClient:
    """A Redis client and the SHA of the compare-and-set script loaded on its server."""

    redis: redis.Redis
    sha: str


class RedisCountSink(StoreSink[CountUpdate, CasClient]):
    """Counts into Redis, versioned by ``seq`` (``rebuild``: also repairs a different
    count at the same ``seq``, for ``likes backfill``)."""

    def __init__(
        self, url: str, retry: RetryPolicy = DEFAULT_RETRY, *, rebuild: bool = False
    ) -> None:
        super().__init__("redis_counts_rebuild" if rebuild else "redis_counts", retry)
        self.url = url
        self.script = REBUILD_SCRIPT if rebuild else CAS_SCRIPT

    def connect(self) -> CasClient:
        client = redis_store.connect_redis(self.url)
        try:
            return CasClient(client, client.script_load(self.script))
        except Exception:
            client.close()
            raise

    def disconnect(self, client: CasClient) -> None:
        client.redis.close()

    def is_transient(self, error: Exception) -> bool:
        return redis_store.is_transient(error)

    def write(self, client: CasClient, items: list[CountUpdate]) -> None:
        try:
            applied = apply_counts(client.redis, items, client.sha)
        except redis.exceptions.NoScriptError:  # the server restarted and lost its scripts
            client.sha = client.redis.script_load(self.script)
            applied = apply_counts(client.redis, items, client.sha)
        observe_freshness(applied)
