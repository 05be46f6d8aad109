"""``likes backfill``: rebuild projections from the edge store while traffic flows, with
a progress bar (rich) or a JSON report.

Runs the backfill dataflow (``flows.backfill``: per-post snapshots of the edge store) in
this process, ``LIKES_BACKFILL_WORKERS`` Bytewax worker threads (4; two ``post_id`` ranges
each, their waits on Postgres and Redis overlap), into the sinks of the projections
asked for (all by default):

* ``redis``, ``postgres``: counts, fenced by ``seq`` like the live flow's writes;
* ``recent``: ``likes:recent:*``, fenced by ``seq``;
* ``clickhouse``: correction rows judged at a consistent point (``ops.backfill_sinks``);
* ``notifications``: ledger and aggregates, one repeatable-read transaction per chunk
  (``sinks.postgres_notifications``);
* ``trending``: scores within the bounds the edge store proves (``ops.backfill_sinks``).

With ``redis`` or ``postgres`` it also hands the live counts flow the edge store's
truth for every post it reads, as flow-state records through the outbox, published by
the statement that reads each chunk (``flows.backfill_chunks``): when the flow reaches
them (seconds later), its own per-post count and ``seq`` are exact and the counts it
writes next are exact too, so drift in the flow's state (a duplicate after the dedupe
TTL, a lost recovery store) does not come back with the post's next like.

The report says how many values the last three changed and how many flow-state records
were written (``written``), and which posts ClickHouse could not judge before the
settle deadline (``unsettled``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from bytewax.outputs import Sink
from bytewax.run import cli_main
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from core.records import CountUpdate, RecentLikers
from core.settings import CommonSettings, FlowSettings
from flows.backfill import BackfillPlan, FlowStateRecords, PostSnapshot, build_flow
from ops import backfill_runs
from ops.backfill_sinks import ClickHouseCorrectionSink, TrendingRebuildSink
from ops.flow_status import end_offsets
from sinks.postgres_counts import PostgresCountSink
from sinks.postgres_notifications import PostgresNotificationRebuildSink
from sinks.redis_counts import RedisCountSink
from sinks.redis_recent import RedisRecentSink

REBUILT = ("redis", "postgres", "recent", "clickhouse", "notifications", "trending")


class BackfillError(ValueError):
    """The backfill was asked for something it cannot do."""


@dataclass
class BackfillReport:
    """What one run read and how long it took."""

    projections: list[str]
    posts: int = 0
    edges: int = 0
    seconds: float = 0.0
    since: str | None = None
    ranges: dict[str, Any] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    unsettled: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        rate = self.edges / self.seconds if self.seconds else 0.0
        return {**self.__dict__, "edges_per_second": round(rate)}


def _recent_sinks(s: CommonSettings, projections: list[str]) -> list[Sink[RecentLikers]]:
    if "recent" not in projections:
        return []
    return [RedisRecentSink(s.redis_url, s.postgres_url, size=FlowSettings().recent_likers)]


@dataclass
class _Rebuilds:
    """The per-post sinks of the projections asked for, and how to read what each wrote."""

    sinks: list[Sink[CountUpdate]] = field(default_factory=list)
    records: FlowStateRecords | None = None
    tallies: dict[str, Callable[[], tuple[int, list[int]]]] = field(default_factory=dict)


def _sinks(s: CommonSettings, projections: list[str]) -> _Rebuilds:
    out = _Rebuilds()
    if "redis" in projections:
        out.sinks.append(RedisCountSink(s.redis_url, rebuild=True))
    if "postgres" in projections:
        out.sinks.append(PostgresCountSink(s.postgres_url, rebuild=True))
    if "clickhouse" in projections:
        ch = ClickHouseCorrectionSink(s)
        out.sinks.append(ch)
        out.tallies["clickhouse"] = lambda: (ch.tally.written, ch.tally.unsettled)
    if "notifications" in projections:
        nt = PostgresNotificationRebuildSink(s.postgres_url)
        out.sinks.append(nt)
        out.tallies["notifications"] = lambda: (nt.tally.written, [])
    if "trending" in projections:
        tr = TrendingRebuildSink(s, FlowSettings().trending_half_life_s)
        out.sinks.append(tr)
        out.tallies["trending"] = lambda: (tr.tally.written, [])
    if "redis" in projections or "postgres" in projections:
        fs = FlowStateRecords(len(end_offsets(s.kafka_bootstrap, s.events_topic)))
        out.records = fs
        out.tallies["flow_state"] = lambda: (fs.tally.written, [])
    return out


def choose(projections: list[str] | None) -> list[str]:
    """The projections to rebuild (all, by default); refuse unknown names clearly."""
    chosen = list(dict.fromkeys(projections or REBUILT))
    for name in chosen:
        if name not in REBUILT:
            raise BackfillError(f"unknown projection {name!r}; known: {', '.join(REBUILT)}")
    return chosen


def plan(s: CommonSettings, since: datetime | None) -> tuple[BackfillPlan, int]:
    """The post range to cover, and the edge store's estimated number of edges."""
    with psycopg.connect(s.postgres_url) as conn:
        row = conn.execute("SELECT min(post_id), max(post_id) FROM post_likes").fetchone()
        est = conn.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'post_likes'"
        ).fetchone()
    first, last = (int(row[0]), int(row[1])) if row and row[0] is not None else (1, 0)
    # two ranges per worker: a denser range does not leave the other workers idle
    ranges = 2 * s.backfill_workers
    return BackfillPlan(first, last, ranges, since=since), int(est[0]) if est else 0


def run(
    s: CommonSettings,
    projections: list[str] | None = None,
    since: datetime | None = None,
    *,
    show_progress: bool = True,
) -> BackfillReport:
    """Rebuild ``projections`` from the edge store; the report of what was read."""
    chosen = choose(projections)
    p, estimate = plan(s, since)
    report = BackfillReport(projections=chosen, since=since.isoformat() if since else None)
    report.ranges = {k: list(v) for k, v in p.ranges().items()}
    progress = Progress(
        TextColumn("backfill {task.fields[what]}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} edges"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=False,
    )
    task = progress.add_task("edges", total=max(estimate, 1), what=", ".join(chosen))

    counted = threading.Lock()  # the workers' threads all report here
    shown = 0.0  # when the bar was last updated

    def seen(post: PostSnapshot) -> None:
        nonlocal shown
        with counted:
            report.posts += 1
            report.edges += post.edges
            now = time.monotonic()
            if now - shown >= 0.1:  # rich redraws at 10 Hz anyway
                shown = now
                progress.update(task, completed=report.edges, total=max(estimate, report.edges))

    t0 = time.monotonic()
    started = datetime.now(UTC)
    run = backfill_runs.BackfillRun(started, since, tuple(chosen), "running", heartbeat_at=started)
    backfill_runs.record(s, run)  # before anything is read: see ops.backfill_runs
    status = "failed"
    try:
        with progress, backfill_runs.heartbeats(s, run):
            rebuilds = _sinks(s, chosen)
            if p.last >= p.first:
                flow = build_flow(
                    s.postgres_url,
                    p,
                    rebuilds.sinks,
                    seen,
                    _recent_sinks(s, chosen),
                    records=rebuilds.records,
                )
                cli_main(flow, workers_per_process=s.backfill_workers)  # type: ignore[no-untyped-call]
            progress.update(task, total=max(report.edges, 1), completed=report.edges)
        report.seconds = round(time.monotonic() - t0, 3)
        for name, tally in rebuilds.tallies.items():
            report.written[name], unsettled = tally()
            if unsettled:
                report.unsettled[name] = unsettled
        status = "done" if not report.unsettled else "unsettled"
    finally:
        backfill_runs.record(s, replace(run, status=status, ended_at=datetime.now(UTC)))
    return report
