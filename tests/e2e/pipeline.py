"""Helpers for end-to-end checks: drive load, wait for the projections (counts, and the
fanout flow's notifications and trending scores) to converge."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import psycopg
import redis

from core.settings import CommonSettings
from loadgen.parallel import run_parallel
from loadgen.workload import Workload, WorkloadResult, register_posts
from ops.drift import converge as converge  # where the end-to-end tests import it from
from tests.conftest import auth, fresh_id


def new_posts(s: CommonSettings, n: int) -> list[int]:
    posts = [fresh_id() for _ in range(n)]
    asyncio.run(register_posts(s.api_url, s.jwt_secret.get_secret_value(), posts, fresh_id()))
    return posts


def drive(
    s: CommonSettings, posts: list[int], operations: int, processes: int = 1, **kw: object
) -> WorkloadResult:
    """Drive the workload through the API; ``processes`` > 1 uses several client processes."""
    w = Workload(posts=posts, operations=operations, seed=fresh_id() % 10_000, **kw)  # type: ignore[arg-type]
    return run_parallel(s.api_url, s.jwt_secret.get_secret_value(), w, processes)


def drive_during(
    s: CommonSettings, posts: list[int], operations: int, disturb: Callable[[], None]
) -> WorkloadResult:
    """Drive ``operations`` through the API while ``disturb`` runs in a thread (kills),
    keeping traffic flowing until it is done (later workloads use users of their own, so
    the returned record stays the first workload's); ``disturb``'s error is re-raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            disturb()
        except BaseException as e:  # re-raised in the caller's thread
            failures.append(e)

    t = threading.Thread(target=run)
    t.start()
    result = drive(s, posts, operations, viral_share=0.3, concurrency=16)
    while t.is_alive():
        drive(s, posts, operations // 10, viral_share=0.3, concurrency=8, first_user=10**9)
    t.join()
    if failures:
        raise failures[0]
    return result


def acknowledged_mismatches(
    s: CommonSettings, posts: list[int], result: WorkloadResult
) -> dict[tuple[int, int], bool]:
    """Edges whose last acknowledged state (those the clients are certain of) differs
    from the edge store."""
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(
            "SELECT post_id, user_id, state = 'liked' FROM post_likes WHERE post_id = ANY(%s)",
            (posts,),
        ).fetchall()
    truth = {(p, u): bool(liked) for p, u, liked in rows}
    return {
        e: v
        for e, v in result.final_state.items()
        if e not in result.uncertain and truth.get(e, False) != v
    }


def _notification_truth(s: CommonSettings, posts: list[int]) -> tuple[dict[int, int], ...]:
    with psycopg.connect(s.postgres_url) as conn:
        edges = dict(
            conn.execute(
                "SELECT e.post_id, count(*) FROM post_likes e JOIN posts p USING (post_id) "
                "WHERE e.post_id = ANY(%s) AND e.user_id <> p.author_id GROUP BY 1",
                (posts,),
            ).fetchall()
        )
        notes = dict(
            conn.execute(
                "SELECT post_id, total_actors FROM notifications WHERE post_id = ANY(%s)", (posts,)
            ).fetchall()
        )
    return edges, notes


def assert_fanout_converges(s: CommonSettings, posts: list[int]) -> None:
    """Every distinct liker notified exactly once; every liked post has a trending score."""
    deadline = time.monotonic() + 120
    while True:
        edges, notes = _notification_truth(s, posts)
        if edges == notes or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert edges == notes
    author = (
        psycopg.connect(s.postgres_url)
        .execute("SELECT author_id FROM posts WHERE post_id = %s", (posts[0],))
        .fetchone()
    )
    assert author is not None
    page = httpx.get(
        f"{s.api_url}/v1/notifications", params={"limit": 5}, headers=auth(s, author[0])
    ).json()["items"]
    assert len(page) == 5 and all(i["total_actors"] == edges[i["post_id"]] for i in page)
    trending = redis.Redis.from_url(s.redis_url)
    assert all(trending.zscore("likes:trending", str(p)) is not None for p in edges)
