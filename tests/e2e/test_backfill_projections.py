"""``likes backfill`` of ClickHouse windows, notifications and trending under live traffic:
each projection is damaged in the middle of a workload, rebuilt with ``likes backfill
--projection X``, equals what the edge store implies once the pipeline drains, and a
second backfill writes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis

from core.settings import CommonSettings, FlowSettings
from flows.trending import TrendingScores
from ops.analytics import write_window_repairs
from ops.projections import clickhouse_windows, edge_store
from schemas.redis_keys import TRENDING_KEY
from sinks.postgres_notifications import RECENT_ACTORS
from tests.e2e.pipeline import converge, drive, new_posts
from tests.ops.backfill_runs import backfill_report, run_backfill
from tests.waiting import fanout_caught_up, wait_for

pytestmark = pytest.mark.e2e


def backfill(projection: str, since: datetime) -> dict[str, Any]:
    """Run ``likes backfill --projection X --json``; its report (it must succeed)."""
    report = backfill_report(run_backfill(since, projection))
    assert report["projections"] == [projection]
    return report


def damaged_under_load(
    s: CommonSettings, projection: str, damage: Callable[[list[int]], None], posts: int = 60
) -> tuple[list[int], datetime, dict[str, Any]]:
    """Posts driven by a workload during which ``damage`` hits them and the backfill runs."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    ids = new_posts(s, posts)
    runs: list[dict[str, Any]] = []

    def operator() -> None:
        time.sleep(6)
        damage(ids)
        runs.append(backfill(projection, since))

    t = threading.Thread(target=operator)
    t.start()
    result = drive(s, ids, 4_000, viral_share=0.3, unlike_share=0.3, concurrency=16)
    t.join()
    assert result.acked > 2_000 and runs, "the workload or the backfill did not run"
    assert runs[0]["written"][projection] > 0, runs[0]
    return ids, since, runs[0]


def test_backfill_corrects_clickhouse_windows_under_live_traffic(stack: CommonSettings) -> None:
    def damage(posts: list[int]) -> None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        liked = [p for p, (_, seq) in edge_store(stack, posts).items() if seq]  # in the backfill
        held = clickhouse_windows(stack, liked)
        end = now + timedelta(minutes=1)
        rows: list[tuple[Any, ...]] = []
        for i, p in enumerate(liked[:40]):
            lost = max(held.get(p, (0, 0))[0], 1)
            likes, unlikes, moved = (3, 0, 0) if i % 2 else (0, lost, -lost)  # phantom / lost
            rows.append((p, now, end, f"repair:damage-{p}", likes, unlikes, 1, moved))
        write_window_repairs(stack, rows)

    posts, since, report = damaged_under_load(stack, "clickhouse", damage)
    assert not report["unsettled"], report
    assert converge(stack, posts, timeout=180).clean
    again = backfill("clickhouse", since)
    assert again["written"] == {"clickhouse": 0} and not again["unsettled"], again


def edge_store_notifications(s: CommonSettings, posts: list[int]) -> dict[tuple[int, int], Any]:
    """Per (author, post): every non-author, non-erased user who ever liked it, with the
    time of the first like (ms)."""
    sql = """SELECT p.author_id, e.post_id, count(*),
                    max(date_trunc('milliseconds', e.created_at)), array_agg(e.user_id)
             FROM post_likes e JOIN posts p ON p.post_id = e.post_id
             WHERE e.post_id = ANY(%s) AND e.user_id <> p.author_id
               AND NOT EXISTS (SELECT 1 FROM erased_users x WHERE x.user_id = e.user_id)
             GROUP BY 1, 2"""
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(sql, (posts,)).fetchall()
    return {(r, p): (n, at, set(who)) for r, p, n, at, who in rows}


def notifications_agree(s: CommonSettings, posts: list[int]) -> list[Any]:
    """The (author, post) aggregates that differ from the edge store (empty: all agree)."""
    want = edge_store_notifications(s, posts)
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(
            "SELECT recipient_id, post_id, total_actors, updated_at, actor_ids"
            " FROM notifications WHERE post_id = ANY(%s)",
            (posts,),
        ).fetchall()
    got = {(r, p): (n, at, ids) for r, p, n, at, ids in rows}
    bad: list[Any] = [k for k in set(got) - set(want)]
    for key, (n, at, who) in want.items():
        row = got.get(key)
        ok = row is not None and row[:2] == (n, at) and set(row[2]) <= who
        if not ok or row is None or len(set(row[2])) != min(n, RECENT_ACTORS):
            bad.append((key, row, (n, at)))
    return bad


def test_backfill_rebuilds_notifications_under_live_traffic(stack: CommonSettings) -> None:
    def damage(posts: list[int]) -> None:
        with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
            conn.execute("DELETE FROM notifications WHERE post_id = ANY(%s)", (posts[:30],))
            conn.execute(
                "UPDATE notifications SET total_actors = total_actors + 7, actor_ids = '{1}'"
                " WHERE post_id = ANY(%s)",
                (posts[30:],),
            )
            conn.execute(
                "DELETE FROM notification_actors WHERE post_id = ANY(%s) AND actor_id %% 2 = 0",
                (posts[:20],),
            )

    posts, since, _ = damaged_under_load(stack, "notifications", damage)
    fanout_caught_up(stack)
    wait_for("notifications", lambda: notifications_agree(stack, posts), lambda b: not b, 120)
    again = backfill("notifications", since)
    assert again["written"] == {"notifications": 0}, again


def edge_store_trending(s: CommonSettings, posts: list[int]) -> dict[int, float]:
    """The live definition over every like event of ``posts`` (all inside the outbox's
    retention here: the posts are new)."""
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(
            "SELECT post_id, occurred_at FROM like_outbox"
            " WHERE action = 'LikeCreated' AND post_id = ANY(%s) ORDER BY occurred_at",
            (posts,),
        ).fetchall()
    scores = TrendingScores(FlowSettings().trending_half_life_s)
    for p, at in rows:
        scores.add(p, int(at.timestamp() * 1000))
    return scores.scores


def trending_off(s: CommonSettings, posts: list[int]) -> list[Any]:
    """Posts whose ``likes:trending`` score is not the edge store's (empty: all agree)."""
    want = edge_store_trending(s, posts)
    got = redis.Redis.from_url(s.redis_url).zmscore(TRENDING_KEY, [str(p) for p in posts])
    return [
        (p, g, want.get(p))
        for p, g in zip(posts, got, strict=True)
        if (g is None) != (p not in want) or (g is not None and abs(g - want[p]) > 1e-6)
    ]


def test_backfill_rebuilds_trending_under_live_traffic(stack: CommonSettings) -> None:
    def damage(posts: list[int]) -> None:
        r = redis.Redis.from_url(stack.redis_url)
        r.zrem(TRENDING_KEY, *[str(p) for p in posts[:20]])
        r.zadd(TRENDING_KEY, {str(p): 1e6 for p in posts[20:40]})
        r.zadd(TRENDING_KEY, {str(p): -1e6 for p in posts[40:]})

    posts, since, _ = damaged_under_load(stack, "trending", damage)
    fanout_caught_up(stack)
    wait_for("trending", lambda: trending_off(stack, posts), lambda off: not off, 120)
    again = backfill("trending", since)
    assert again["written"] == {"trending": 0}, again
