"""Redis recent likers: ``likes:recent:{post_id}``, a list of user ids, newest first.

Guarantee: exactly-once effect under replay. Each write is a post's absolute list with
its ``seq`` (``RecentLikers.seq``: the sum of edge-version increments behind it),
applied by a script only when ``seq`` is above the stored one
(``likes:recent_seq:{post_id}``); the list and its seq change together, atomically. A
replayed or reordered older list is a no-op. An empty list deletes the key. Keyed on
``post_id``. A ``forced`` list (the flow adopted a backfill's ``seq``) is written
whatever the stored ``seq``: the one the flow had may have been inflated by drift, and
the flow's later lists apply on top of the forced one as usual.

A record that is not ``exact`` (the flow no longer holds enough likers to know the list)
is filled from the edge store: the newest current likers of ``post_likes`` by
``(updated_at, version, user_id)`` descending, through the ``(post_id, updated_at)``
index, one statement per batch. The edge store is never behind the flow (every event
comes from a committed edge), so such a list is at least as new as the flow's position,
and the flow's later lists apply on top at higher ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from core.records import RecentLikers, latest_per_post
from schemas.redis_keys import recent_key, recent_seq_key
from sinks import redis_store
from sinks.base import DEFAULT_RETRY, RetryPolicy, StoreSink

CAS_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '-1')
if ARGV[2] ~= '1' and tonumber(ARGV[1]) <= cur then
  return 0
end
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""
NEWEST_LIKERS_SQL = """
SELECT q.post_id, r.user_id
FROM unnest(%s::bigint[]) AS q(post_id)
CROSS JOIN LATERAL (
    SELECT user_id, updated_at, version FROM post_likes
    WHERE post_id = q.post_id AND state = 'liked'
    ORDER BY updated_at DESC, version DESC, user_id DESC LIMIT %s) AS r
ORDER BY q.post_id, r.updated_at DESC, r.version DESC, r.user_id DESC"""


def newest_likers(conn: psycopg.Connection[Any], posts: list[int], n: int) -> dict[int, list[int]]:
    """The ``n`` newest current likers of each post, from the edge store."""
    out: dict[int, list[int]] = {p: [] for p in posts}
    for post_id, user_id in conn.execute(NEWEST_LIKERS_SQL, (posts, n)):
        out[post_id].append(user_id)
    return out


@dataclass
class RecentClient:
    """A Redis client with the script's SHA, and an edge store connection opened only
    when a list must be read from there."""

    redis: redis.Redis
    sha: str
    postgres_url: str
    pg: psycopg.Connection[Any] | None = field(default=None)

    def edge_store(self) -> psycopg.Connection[Any]:
        if self.pg is None:
            self.pg = psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=5)
        return self.pg

    def close(self) -> None:
        self.redis.close()
        if self.pg is not None:
            self.pg.close()


def write_recent(client: RecentClient, items: list[RecentLikers], size: int) -> int:
    """Apply the newest list of each post with compare-and-set; return how many applied."""
    latest = latest_per_post(items)
    missing = [r.post_id for r in latest if not r.exact]
    filled = newest_likers(client.edge_store(), missing, size) if missing else {}
    pipe = client.redis.pipeline(transaction=False)
    for r in latest:
        users = r.user_ids if r.exact else filled[r.post_id]
        keys = (recent_key(r.post_id), recent_seq_key(r.post_id))
        pipe.evalsha(client.sha, 2, *keys, r.seq, int(r.forced), *users)
    return sum(int(x) for x in pipe.execute())


class RedisRecentSink(StoreSink[RecentLikers, RecentClient]):
    """Recent likers into Redis lists, versioned by ``seq``; inexact lists from Postgres."""

    def __init__(
        self, redis_url: str, postgres_url: str, size: int = 20, retry: RetryPolicy = DEFAULT_RETRY
    ) -> None:
        super().__init__("redis_recent", retry)
        self.redis_url = redis_url
        self.postgres_url = postgres_url
        self.size = size

    def connect(self) -> RecentClient:
        client = redis_store.connect_redis(self.redis_url)
        try:
            return RecentClient(client, client.script_load(CAS_SCRIPT), self.postgres_url)
        except Exception:
            client.close()
            raise

    def disconnect(self, client: RecentClient) -> None:
        client.close()

    def is_transient(self, error: Exception) -> bool:
        return redis_store.is_transient(error) or isinstance(error, psycopg.OperationalError)

    def write(self, client: RecentClient, items: list[RecentLikers]) -> None:
        try:
            write_recent(client, items, self.size)
        except redis.exceptions.NoScriptError:  # the server restarted and lost its scripts
            client.sha = client.redis.script_load(CAS_SCRIPT)
            write_recent(client, items, self.size)
