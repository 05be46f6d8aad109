"""Self-healing: ``kill -9`` of every component in turn, under a live workload, with
nothing but the supervisor restarting it (contract section 1), and afterwards every
projection equals the edge store and every acknowledged like is there (section 8)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from core.settings import CommonSettings
from devstack import stack as stack_ops
from tests.e2e.pipeline import converge, drive, new_posts
from tests.faults.kill import RESTART_WITHIN_S, kill_and_wait

pytestmark = pytest.mark.e2e

ORDER = [
    "flow-counts",
    "redis",
    "connect",
    "api",
    "prometheus",
    "flow-fanout",
    "flow-analytics",
    "exporter",
    "jobs",
    "kafka",
    "postgres",
]


def _edge_states(s: CommonSettings, posts: list[int]) -> dict[tuple[int, int], bool]:
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(
            "SELECT post_id, user_id, state = 'liked' FROM post_likes WHERE post_id = ANY(%s)",
            (posts,),
        ).fetchall()
    return {(p, u): bool(liked) for p, u, liked in rows}


def test_every_component_comes_back_by_itself(stack: CommonSettings) -> None:
    posts = new_posts(stack, 150)
    before = {name: stack_ops.restarts(stack, name) for name in ORDER}
    took: dict[str, float] = {}
    failures: list[BaseException] = []

    def killer() -> None:
        try:
            for name in ORDER:
                took[name] = kill_and_wait(stack, name)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    t = threading.Thread(target=killer)
    t.start()
    result = drive(stack, posts, 12_000, viral_share=0.3, concurrency=16)
    while t.is_alive():  # the workload may finish first: keep the pipeline busy until done
        # with users of their own: the check below holds the first workload's record
        drive(stack, posts, 1_000, viral_share=0.3, concurrency=8, first_user=10**9)
    t.join()
    assert not failures, failures
    assert set(took) == set(ORDER)
    assert all(sec < RESTART_WITHIN_S for sec in took.values()), took
    for name in ORDER:
        assert stack_ops.restarts(stack, name) >= before[name] + 1, name
    assert result.acked > 5_000
    truth = _edge_states(stack, posts)
    certain = {e: v for e, v in result.final_state.items() if e not in result.uncertain}
    wrong = {e: v for e, v in certain.items() if truth.get(e, False) != v}
    assert not wrong, f"{len(wrong)} acknowledged states differ from the edge store"
    report = converge(stack, posts, timeout=240)
    assert report.clean, report.summary()
