"""``likes backfill``: rebuild the count projections from the edge store while traffic
flows, with a progress bar (rich) or a JSON report.

Runs the backfill dataflow (``flows.backfill``: per-post snapshots fenced by ``seq``)
in this process, one worker. ``redis`` and ``postgres`` (counts) and ``recent`` (recent
likers) are rebuilt; ``clickhouse`` windows are repaired by ``likes reconcile --repair``
instead, and the other projections (notifications, trending) and the flows' own state
are not rebuilt yet: asking for them is an error that says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from bytewax.outputs import Sink
from bytewax.testing import run_main
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from core.records import CountUpdate, RecentLikers
from core.settings import CommonSettings, FlowSettings
from flows.backfill import BackfillPlan, PostSnapshot, build_flow
from sinks.postgres_counts import PostgresCountSink
from sinks.redis_counts import RedisCountSink
from sinks.redis_recent import RedisRecentSink

REBUILT = ("redis", "postgres", "recent")
NOT_YET = {
    "clickhouse": "use `likes reconcile --repair`: its correction rows are judged at a "
    "consistent point",
    "notifications": "not rebuilt by backfill yet",
    "trending": "not rebuilt by backfill yet",
}


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

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        rate = self.edges / self.seconds if self.seconds else 0.0
        return {**self.__dict__, "edges_per_second": round(rate)}


def _recent_sinks(s: CommonSettings, projections: list[str]) -> list[Sink[RecentLikers]]:
    if "recent" not in projections:
        return []
    return [RedisRecentSink(s.redis_url, s.postgres_url, size=FlowSettings().recent_likers)]


def _sinks(s: CommonSettings, projections: list[str]) -> list[Sink[CountUpdate]]:
    out: list[Sink[CountUpdate]] = []
    if "redis" in projections:
        out.append(RedisCountSink(s.redis_url, rebuild=True))
    if "postgres" in projections:
        out.append(PostgresCountSink(s.postgres_url, rebuild=True))
    return out


def choose(projections: list[str] | None) -> list[str]:
    """The projections to rebuild (all it can, by default); refuse the others clearly."""
    chosen = projections or list(REBUILT)
    for name in chosen:
        if name in NOT_YET:
            raise BackfillError(f"projection {name!r}: {NOT_YET[name]}")
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
    return BackfillPlan(first=first, last=last, since=since), int(est[0]) if est else 0


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

    def seen(post: PostSnapshot) -> None:
        report.posts += 1
        report.edges += post.edges
        progress.update(task, advance=post.edges, total=max(estimate, report.edges))

    t0 = time.monotonic()
    with progress:
        if p.last >= p.first:
            flow = build_flow(s.postgres_url, p, _sinks(s, chosen), seen, _recent_sinks(s, chosen))
            run_main(flow)  # type: ignore[no-untyped-call]
        progress.update(task, total=max(report.edges, 1), completed=report.edges)
    report.seconds = round(time.monotonic() - t0, 3)
    return report
