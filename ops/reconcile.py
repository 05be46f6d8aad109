"""``likes reconcile``: find drift between projections and the edge store at a consistent
point, and with ``--repair`` remove it, while traffic flows.

Guarantees:

* No false positives from lag. Each value is judged against its ``seq`` (see
  ``ops.drift.judge``): a value that could be merely behind is never reported; it is
  re-read every second for ``grace_s``, and reported only if neither it nor its post's
  truth moved in all that time while the flow writing it was not behind (a projection
  that is stuck, e.g. a deleted key of a quiet post; see :func:`_pass`). Posts still
  moving at the end, or waiting on a lagging flow, are listed as unsettled, not as drift.
* Repairs never overwrite newer data. Redis and ``post_like_counts`` are set to the
  truth's ``(count, seq)`` only if they still hold the value that was judged (a
  compare-and-set on it), so a write the counts flow made meanwhile wins. ClickHouse
  gets a correction row (``part = 'repair:<uuid>'``) that moves ``net`` and
  ``transitions`` by exactly the difference, written only for a value judged at its own
  position (same ``seq``, ahead of the truth, or stuck); drift seen while the post is
  still moving is left for the next run.
* Drift that comes from the counts flow's own state (a duplicate older than the dedupe
  TTL) returns with the post's next event; rebuilding that state is ``likes backfill``'s.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from core.settings import CommonSettings, FlowSettings
from ops.analytics import write_window_repairs
from ops.drift import DriftReport, Verdict, judge
from ops.flow_status import FlowWatch, end_offsets
from ops.projections import PROJECTIONS, READERS, State, edge_store
from schemas.redis_keys import LAST_DRIFT_KEY, count_key, count_seq_key


@dataclass
class Finding:
    """A projection value judged wrong: what it held and what the edge store says."""

    post: int
    got: State
    want: State
    settled: bool  # judged at its own position: a correction row is safe


@dataclass
class Findings:
    """Everything one pass found."""

    posts_checked: int = 0
    drift: dict[str, dict[int, Finding]] = field(default_factory=dict)
    unsettled: dict[str, list[int]] = field(default_factory=dict)

    def report(self) -> DriftReport:
        """As a :class:`DriftReport` of ``(post, got count, want count)``."""
        out = DriftReport(posts_checked=self.posts_checked, unsettled=self.unsettled)
        for name in PROJECTIONS:
            rows = sorted(self.drift.get(name, {}).values(), key=lambda f: f.post)
            out.drift[name] = [(f.post, f.got[0], f.want[0]) for f in rows]
        return out


def judge_now(
    s: CommonSettings, name: str, posts: list[int] | None
) -> tuple[list[int], dict[int, Finding], dict[int, tuple[State, State]]]:
    """One reading of a projection, then of the truth: the posts read, those judged
    drifting, and those that may be merely behind (with both readings)."""
    got = READERS[name](s, posts)
    truth = edge_store(s, posts if posts is not None else None)
    ids = sorted(set(got) | set(truth)) if posts is None else posts
    drift: dict[int, Finding] = {}
    behind: dict[int, tuple[State, State]] = {}
    for p in ids:
        g, t = got.get(p, (0, 0)), truth.get(p, (0, 0))
        verdict = judge(g, t)
        if verdict is Verdict.DRIFT:
            drift[p] = Finding(p, g, t, settled=g[1] >= t[1])
        elif verdict is Verdict.BEHIND:
            behind[p] = (g, t)
    return ids, drift, behind


FLOW_OF = {"redis": "counts", "postgres": "counts", "clickhouse": "analytics"}
"""The flow that writes each projection."""
WRITE_MARGIN_S = {"redis": 1.0, "postgres": 1.5, "clickhouse": 4.0}
"""Without write marks (a flow whose sinks do not gather), how long after its flow read
an event a projection may still not show it."""
MARK_WAIT_S = 30.0
"""How long a judgement waits for the flow's sinks to write what it has read."""


def _handoff_s(name: str) -> float:
    """How long after its flow read an event the rows it makes may reach the sink: the
    same step for counts; ClickHouse gets an open window's rows every ``window_emit_s``."""
    return 1.0 + (FlowSettings().window_emit_s if name == "clickhouse" else 0.0)


def _fence(s: CommonSettings) -> dict[int, int] | None:
    """The events topic's end offsets now (None when Kafka cannot tell)."""
    try:
        return end_offsets(s.kafka_bootstrap, s.events_topic)
    except Exception:  # unknown: nothing is declared stuck on it
        return None


def _read_past(watch: FlowWatch, name: str, fence: dict[int, int]) -> bool:
    """The flow writing ``name`` has read every event below ``fence`` (its published
    progress; False when that cannot be told)."""
    try:
        return watch.passed(FLOW_OF[name], fence)
    except Exception:  # unknown: nothing is declared stuck on it
        return False


def _written_past(watch: FlowWatch, name: str) -> bool:
    """Wait until the flow writing ``name`` has written everything it has read so far
    (its gathered sinks' marks, ``flows.progress``, pass now + the handoff); False if
    that does not happen within ``MARK_WAIT_S`` or cannot be told. A flow that
    publishes no marks (nothing gathered) writes as it reads: a margin is waited."""
    target = time.time() + _handoff_s(name)
    deadline = time.monotonic() + MARK_WAIT_S
    while True:
        try:
            mark = watch.written_through(FLOW_OF[name])
        except Exception:  # unknown: nothing is declared stuck on it
            return False
        if mark is None:
            time.sleep(WRITE_MARGIN_S[name])
            return True
        if mark >= target:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def _flow_past(s: CommonSettings, name: str, fence: dict[int, int]) -> bool:
    """The flow writing ``name`` has read past ``fence`` and written what it read."""
    with FlowWatch(s) as watch:
        return _read_past(watch, name, fence) and _written_past(watch, name)


def _pass(s: CommonSettings, name: str, posts: list[int] | None, grace_s: float) -> Findings:
    """Drift of one projection: judge, then re-judge the undecided until they settle.

    A value that never moves in ``grace_s`` is stuck only if its flow is not behind:
    the flow must have read every event that was on Kafka a second after the truth was
    read (Debezium's lag is far below that), and the value must still not have moved
    once the flow's sinks have written all it had read (:func:`_written_past`); a
    lagging flow (catching up after an outage) or a sink that is slow to write leaves it
    unsettled, never corrected on a reading that the flow's next write would change."""
    ids, drift, first = judge_now(s, name, posts)
    found = Findings(posts_checked=len(ids))
    pending = dict(first)
    deadline = time.monotonic() + grace_s
    fence: dict[int, int] | None = None
    while pending and time.monotonic() < deadline:
        time.sleep(1.0)
        if fence is None:
            fence = _fence(s)
        _rejudge(s, name, pending, drift)
    stuck = [p for p, reading in pending.items() if reading == first[p]]
    if stuck and time.monotonic() >= deadline and fence is not None and _flow_past(s, name, fence):
        _rejudge(s, name, pending, drift)
        for p in stuck:
            if pending.get(p) == first[p]:
                g, t = first[p]
                drift[p] = Finding(p, g, t, settled=True)  # stuck: nothing moved all along
    found.drift[name] = drift
    found.unsettled[name] = sorted(p for p in pending if p not in drift)
    return found


def _rejudge(
    s: CommonSettings,
    name: str,
    pending: dict[int, tuple[State, State]],
    drift: dict[int, Finding],
) -> None:
    """Read the pending posts again: exact ones leave, drifting ones move to ``drift``,
    the rest keep their new reading."""
    ids_now = sorted(pending)
    got_now, truth_now = READERS[name](s, ids_now), edge_store(s, ids_now)
    for p in ids_now:
        g, t = got_now[p], truth_now[p]
        verdict = judge(g, t)
        if verdict is Verdict.EXACT:
            del pending[p]
        elif verdict is Verdict.DRIFT:
            drift[p] = Finding(p, g, t, settled=g[1] >= t[1])
            del pending[p]
        else:
            pending[p] = (g, t)  # still behind; ``first`` keeps the first reading


def find_drift(
    s: CommonSettings, posts: list[int] | None = None, *, grace_s: float = 10.0
) -> Findings:
    """Drift in every projection (of ``posts``, or of every post any of them knows)."""
    out = Findings()
    for name in PROJECTIONS:
        one = _pass(s, name, posts, grace_s)
        out.posts_checked = max(out.posts_checked, one.posts_checked)
        out.drift[name] = one.drift[name]
        out.unsettled[name] = one.unsettled[name]
    return out


# compare-and-set on the judged value (an absent key reads as 0, as the reader does)
_REDIS_CAS = """
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local q = tonumber(redis.call('GET', KEYS[2]) or '0')
if c ~= tonumber(ARGV[1]) or q ~= tonumber(ARGV[2]) then return 0 end
if ARGV[5] == '1' then redis.call('DEL', KEYS[1], KEYS[2]) return 1 end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[4])
return 1
"""


def _repair_redis(s: CommonSettings, fixes: list[Finding]) -> None:
    r = redis.Redis.from_url(s.redis_url, socket_timeout=10)
    cas = r.register_script(_REDIS_CAS)
    for f in fixes:
        gone = "1" if f.want == (0, 0) else "0"
        cas(keys=[count_key(f.post), count_seq_key(f.post)], args=[*f.got, *f.want, gone])


def _repair_postgres(s: CommonSettings, fixes: list[Finding]) -> None:
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        for f in fixes:
            if f.want == (0, 0):
                conn.execute(
                    "DELETE FROM post_like_counts WHERE post_id = %s AND like_count = %s"
                    " AND seq = %s",
                    (f.post, *f.got),
                )
                continue
            conn.execute(
                "INSERT INTO post_like_counts AS c (post_id, like_count, seq, updated_at)"
                " VALUES (%s, %s, %s, now()) ON CONFLICT (post_id) DO UPDATE"
                " SET like_count = EXCLUDED.like_count, seq = EXCLUDED.seq, updated_at = now()"
                " WHERE c.like_count = %s AND c.seq = %s",
                (f.post, *f.want, *f.got),
            )


def _repair_clickhouse(s: CommonSettings, fixes: list[Finding]) -> None:
    now_ms = int(time.time() * 1000)
    start = datetime.fromtimestamp((now_ms - now_ms % 60_000) / 1000, tz=UTC)
    end = datetime.fromtimestamp((now_ms - now_ms % 60_000 + 60_000) / 1000, tz=UTC)
    rows: list[tuple[Any, ...]] = []
    for f in fixes:
        diff, moved = f.want[0] - f.got[0], f.want[1] - f.got[1]
        part = f"repair:{uuid.uuid4()}"
        rows.append((f.post, start, end, part, max(diff, 0), max(-diff, 0), 1, moved))
    write_window_repairs(s, rows)


def settle(
    s: CommonSettings, name: str, posts: list[int], grace_s: float
) -> tuple[dict[int, Finding], list[int]]:
    """Judge ``posts`` of projection ``name`` as one ``likes reconcile`` pass does: the
    drift found, and the posts still moving at the end of the grace."""
    found = _pass(s, name, posts, grace_s)
    return found.drift[name], found.unsettled[name]


def correct_clickhouse(s: CommonSettings, findings: list[Finding]) -> int:
    """Correction rows for the ClickHouse drift judged at its own position (``settled``);
    how many were written. Others are left for a later judgment."""
    fixes = [f for f in findings if f.settled]
    _repair_clickhouse(s, fixes)
    return len(fixes)


def repair(s: CommonSettings, found: Findings) -> dict[str, int]:
    """Fix what can be fixed safely; how many values each projection had written."""
    redis_fixes = list(found.drift.get("redis", {}).values())
    pg_fixes = list(found.drift.get("postgres", {}).values())
    ch_fixes = [f for f in found.drift.get("clickhouse", {}).values() if f.settled]
    _repair_redis(s, redis_fixes)
    _repair_postgres(s, pg_fixes)
    _repair_clickhouse(s, ch_fixes)
    return {"redis": len(redis_fixes), "postgres": len(pg_fixes), "clickhouse": len(ch_fixes)}


def reconcile(
    s: CommonSettings, *, fix: bool, posts: list[int] | None = None, grace_s: float = 10.0
) -> tuple[DriftReport, dict[str, Any]]:
    """The drift left (after repairing, if asked) and a summary of what was found."""
    found = find_drift(s, posts, grace_s=grace_s)
    report = found.report()
    summary: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "found": report.summary()}
    left = report
    if fix and not report.clean:
        summary["repaired"] = repair(s, found)
        drifting = sorted({f.post for d in found.drift.values() for f in d.values()})
        left = find_drift(s, drifting, grace_s=grace_s).report()
        summary["after_repair"] = left.summary()
    redis.Redis.from_url(s.redis_url).set(
        LAST_DRIFT_KEY,
        json.dumps({"at": summary["at"], **{k: len(v) for k, v in left.drift.items()}}),
    )
    return left, summary
