"""``likes reconcile``: find drift between projections and the edge store, optionally fix it.

Drift is only what persists: a difference seen twice, ``grace_s`` apart, with the same
values (a projection that is merely behind catches up in between). ``--repair`` writes
the edge store's count into Redis and ``post_like_counts`` (their ``seq`` is kept, so the
flow's next write for the post still applies), and adds a correction window row
(``part = 'repair:<uuid>'``) in ClickHouse so the sum of ``net`` matches. Drift caused by
the flow's own state (a duplicate arriving after the dedupe TTL) comes back with that
post's next event until the flow's state is rebuilt from the edge store.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from core.settings import CommonSettings
from ops.drift import DriftReport, measure
from schemas.redis_keys import count_key

LAST_DRIFT_KEY = "likes:last_drift"


def persistent_drift(s: CommonSettings, grace_s: float = 3.0) -> DriftReport:
    """Drift that is still there, unchanged, after ``grace_s`` seconds."""
    first = measure(s)
    if first.clean:
        return first
    time.sleep(grace_s)
    posts = sorted({p for d in first.drift.values() for p, _, _ in d})
    second = measure(s, posts)
    for name, rows in second.drift.items():
        seen = set(first.drift.get(name, []))
        second.drift[name] = [r for r in rows if r in seen]
    second.posts_checked = first.posts_checked
    return second


def _repair_windows(s: CommonSettings, fixes: list[tuple[int, int, int]]) -> None:
    from ops.analytics import write_window_repairs

    now_ms = int(time.time() * 1000)
    start = now_ms - now_ms % 60_000
    rows = [
        (
            p,
            datetime.fromtimestamp(start / 1000, tz=UTC),
            datetime.fromtimestamp((start + 60_000) / 1000, tz=UTC),
            f"repair:{uuid.uuid4()}",
            max(want - got, 0),
            max(got - want, 0),
            1,
        )
        for p, got, want in fixes
    ]
    write_window_repairs(s, rows)


def repair(s: CommonSettings, report: DriftReport) -> None:
    """Write the edge store's counts over every drifting projection value."""
    r = redis.Redis.from_url(s.redis_url)
    for p, _, want in report.drift.get("redis", []):
        r.set(count_key(p), want)
    fixes = report.drift.get("postgres", [])
    if fixes:
        with psycopg.connect(s.postgres_url) as conn:
            for p, _, want in fixes:
                conn.execute(
                    "INSERT INTO post_like_counts (post_id, like_count) VALUES (%s, %s) "
                    "ON CONFLICT (post_id) DO UPDATE SET like_count = EXCLUDED.like_count,"
                    " updated_at = now()",
                    (p, want),
                )
    if report.drift.get("clickhouse"):
        _repair_windows(s, report.drift["clickhouse"])


def reconcile(s: CommonSettings, *, fix: bool) -> tuple[DriftReport, dict[str, Any]]:
    """The drift left (after repairing, if asked) and a summary of what was found."""
    found = persistent_drift(s)
    summary: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "found": found.summary()}
    left = found
    if fix and not found.clean:
        repair(s, found)
        left = measure(s, sorted({p for d in found.drift.values() for p, _, _ in d}))
        summary["after_repair"] = left.summary()
    redis.Redis.from_url(s.redis_url).set(
        LAST_DRIFT_KEY,
        json.dumps({"at": summary["at"], **{k: len(v) for k, v in left.drift.items()}}),
    )
    return left, summary
