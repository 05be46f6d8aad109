"""The backfill's ClickHouse and trending rebuilds: sinks fed one post at a time (a
:class:`~core.records.CountUpdate` from the backfill flow) that judge and repair the post.

ClickHouse windows. Guarantee: after a run, every post the run could judge at a
consistent point has ``sum(net)`` over its windows equal to its liked edges, and the
``transitions`` behind it equal to ``sum(version)``; nothing is double-counted. Each post
is judged exactly as ``likes reconcile`` judges it (``ops.reconcile``): the windows are
read before the edge store, so a post whose windows could be merely behind (events in
flight) is never corrected; it is re-judged until it is exact, or is proven wrong at its
own position (same ``seq``, ahead of the truth, or stuck: nothing moved for the grace),
and only then gets one correction row of exactly the difference. A post that keeps
moving until ``settle_s`` has passed is left alone and reported as unsettled. A second
run finds nothing to correct. Readings lost to a dropped connection are read again (a
store restarting, the analytics flow restarted by ``likes flows-reset`` or its
watchdog); a correction is sent again only as the same rows (``ops.analytics``).

Trending. The live definition (``flows.trending``) scores a post by every like it ever
received, at the like's time, including likes later withdrawn. The edge store knows each
edge's first like (``created_at``), its current like if liked (``updated_at``), and, for
the outbox's retention (``outbox_retention_s``, 1 h), every like event; a like of an edge
liked, unliked and liked again more than once, older than that retention, is known to
have happened but not when. So the rebuild computes, per post, a lower bound (unknown
times taken as ``created_at``) and an upper bound (taken as ``updated_at``), equal when
no time is unknown. Guarantee: a score below the lower bound, or absent, is raised to it
(a score only grows with likes, so this never undoes a live write); a score above the
upper bound is lowered to the lower bound only if it is still the value read before the
edge store was (a compare-and-set: a live write made meanwhile wins); a score within the
bounds is left alone (the live flow's own, exact value). Posts whose decayed weight the
live flow would already have dropped are not added. A second run writes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.commands.core import Script

from core.records import CountUpdate
from core.settings import CommonSettings
from core.tally import Tally
from flows.trending import FORGET_BELOW, T0_MS, TrendingScores
from ops.reconcile import Finding, correct_clickhouse, judge_now, settle
from schemas.redis_keys import TRENDING_KEY
from sinks import redis_store
from sinks.base import DEFAULT_RETRY, StoreSink, reporting
from sinks.postgres_store import TRANSIENT

_READ_MAX = 500  # posts per ClickHouse read (``ops.projections`` reads longer lists whole)
_EPS = 1e-9  # scores are logs: rounding of the same sum in another order stays far below


def _chunks(posts: list[int], n: int = _READ_MAX) -> Iterable[list[int]]:
    for i in range(0, len(posts), n):
        yield posts[i : i + n]


class _ClickHousePartition(StatelessSinkPartition[CountUpdate]):
    def __init__(self, sink: ClickHouseCorrectionSink) -> None:
        self._sink = sink
        self._pending: set[int] = set()
        # readings only: a correction is written once per judgement, never re-judged
        self._reading = DEFAULT_RETRY.retrying(
            lambda e: isinstance(e, TRANSIENT), reporting("clickhouse_correction_reads")
        )

    def write_batch(self, items: list[CountUpdate]) -> None:
        s = self._sink.settings
        for chunk in _chunks(sorted({u.post_id for u in items})):
            _, drift, behind = self._reading(judge_now, s, "clickhouse", chunk)
            self._correct(drift.values())
            self._pending.update(behind)

    def _correct(self, findings: Iterable[Finding]) -> None:
        found = list(findings)
        self._sink.tally.add(correct_clickhouse(self._sink.settings, found))
        self._pending.update(f.post for f in found if not f.settled)

    def close(self) -> None:
        sink = self._sink
        deadline = time.monotonic() + sink.settle_s
        while self._pending and time.monotonic() < deadline:
            todo, self._pending = sorted(self._pending), set()
            for chunk in _chunks(todo):
                drift, moving = self._reading(
                    settle, sink.settings, "clickhouse", chunk, sink.grace_s
                )
                self._correct(drift.values())
                self._pending.update(moving)
        sink.tally.unsettle(self._pending)


class ClickHouseCorrectionSink(DynamicSink[CountUpdate]):
    """Correction rows for the ClickHouse windows of each post (module docstring)."""

    def __init__(self, s: CommonSettings, grace_s: float = 10.0, settle_s: float = 180.0) -> None:
        self.settings, self.grace_s, self.settle_s = s, grace_s, settle_s
        self.tally = Tally()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ClickHousePartition:
        return _ClickHousePartition(self)


_EDGES_SQL = """
SELECT e.post_id, e.user_id, e.version, e.state = 'liked', e.created_at, e.updated_at,
       now()
FROM post_likes e WHERE e.post_id = ANY(%s)"""
_OUTBOX_LIKES_SQL = """
SELECT edge_key, edge_version, occurred_at FROM like_outbox
WHERE action = 'LikeCreated' AND edge_key = ANY(%s)"""
# raise what is below the lower bound; lower what is above the upper bound only if it is
# still the value read before the edge store was; add an absent post unless it is cold
TRENDING_SCRIPT = """
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
local low = tonumber(ARGV[2])
if not cur then
  if ARGV[6] == '1' then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) return 1 end
  return 0
end
cur = tonumber(cur)
if cur < low - tonumber(ARGV[5])
   or (ARGV[4] ~= '' and cur == tonumber(ARGV[4]) and cur > tonumber(ARGV[3]) + tonumber(ARGV[5]))
then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0
"""


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class _Edge:
    version: int
    liked: bool
    first_ms: int
    last_ms: int


def like_times(edge: _Edge, known: dict[int, int]) -> tuple[list[int], list[int]]:
    """The times of an edge's likes (odd versions): lower and upper bounds for each,
    from what the edge store knows (``known``: outbox like times by version)."""
    low, high = [], []
    for v in range(1, edge.version + 1, 2):
        if v == 1:
            t: tuple[int, int] = (edge.first_ms, edge.first_ms)
        elif v in known:
            t = (known[v], known[v])
        elif v == edge.version and edge.liked:
            t = (edge.last_ms, edge.last_ms)
        else:
            t = (edge.first_ms, edge.last_ms)
        low.append(t[0])
        high.append(t[1])
    return low, high


def _score(half_life_s: float, times: list[int]) -> float:
    scores = TrendingScores(half_life_s)
    for ms in sorted(times):
        scores.add(0, ms)
    return scores.scores[0]


@dataclass
class _TrendingClient:
    redis: redis.Redis
    script: Script
    pg: psycopg.Connection[Any]


class TrendingRebuildSink(StoreSink[CountUpdate, _TrendingClient]):
    """``likes:trending`` scores of each post, rebuilt within the edge store's bounds
    (module docstring); a lost connection is retried like every store sink's (the
    script only moves a score toward the bounds, so a repeated batch writes nothing)."""

    def __init__(self, s: CommonSettings, half_life_s: float) -> None:
        super().__init__("trending_rebuild")
        self.settings, self.half_life_s = s, half_life_s
        self.tally = Tally()

    def connect(self) -> _TrendingClient:
        r = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10)
        pg = psycopg.connect(self.settings.postgres_url, autocommit=True, connect_timeout=5)
        return _TrendingClient(r, r.register_script(TRENDING_SCRIPT), pg)

    def disconnect(self, client: _TrendingClient) -> None:
        client.pg.close()
        client.redis.close()

    def is_transient(self, error: Exception) -> bool:
        return redis_store.is_transient(error) or isinstance(error, TRANSIENT)

    def write(self, client: _TrendingClient, items: list[CountUpdate]) -> None:
        posts = sorted({u.post_id for u in items})
        seen = client.redis.zmscore(TRENDING_KEY, [str(p) for p in posts])
        with client.pg.transaction():
            client.pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            edges, now_ms = _edges(client.pg, posts)
            known = _known(client.pg, edges)
        half_life = self.half_life_s
        cold = (now_ms - T0_MS) / (half_life * 1000 / math.log(2)) - FORGET_BELOW
        for post, before in zip(posts, seen, strict=True):
            if post not in edges:
                continue
            low: list[int] = []
            high: list[int] = []
            for user, edge in edges[post].items():
                lo, hi = like_times(edge, known.get(f"{post}:{user}", {}))
                low += lo
                high += hi
            lower, upper = _score(half_life, low), _score(half_life, high)
            args: list[str | int] = [post, repr(lower), repr(upper)]
            args += ["" if before is None else repr(before), repr(_EPS)]
            args.append("1" if lower >= cold else "0")
            self.tally.add(int(client.script(keys=[TRENDING_KEY], args=args)))


def _edges(
    pg: psycopg.Connection[Any], posts: list[int]
) -> tuple[dict[int, dict[int, _Edge]], int]:
    rows = pg.execute(_EDGES_SQL, (posts,)).fetchall()
    edges: dict[int, dict[int, _Edge]] = {}
    for p, u, v, liked, first, last, _ in rows:
        edges.setdefault(p, {})[u] = _Edge(v, liked, _ms(first), _ms(last))
    now_ms = _ms(rows[0][6]) if rows else int(time.time() * 1000)
    return edges, now_ms


def _known(
    pg: psycopg.Connection[Any], edges: dict[int, dict[int, _Edge]]
) -> dict[str, dict[int, int]]:
    unsure = [f"{p}:{u}" for p, es in edges.items() for u, e in es.items() if e.version >= 4]
    known: dict[str, dict[int, int]] = {}
    if unsure:
        for key, v, at in pg.execute(_OUTBOX_LIKES_SQL, (unsure,)).fetchall():
            known.setdefault(key, {})[int(v)] = _ms(at)
    return known
