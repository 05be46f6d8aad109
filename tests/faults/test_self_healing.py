"""Self-healing: ``kill -9`` of every component in turn, under a live workload, with
nothing but the supervisor restarting it (contract section 1), and afterwards every
projection equals the edge store and every acknowledged like is there (section 8), and
the operator is told of every restart (alert ``ComponentRestarted``, section 7)."""

from __future__ import annotations

from functools import partial

import pytest

from core.settings import CommonSettings
from devstack import stack as stack_ops
from tests.e2e.pipeline import acknowledged_mismatches, converge, drive_during, new_posts
from tests.faults.kill import RESTART_WITHIN_S, kill_and_wait
from tests.waiting import alert_firing, wait_until

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


def test_every_component_comes_back_by_itself(stack: CommonSettings) -> None:
    posts = new_posts(stack, 150)
    before = {name: stack_ops.restarts(stack, name) for name in ORDER}
    took: dict[str, float] = {}

    def killer() -> None:
        for name in ORDER:
            took[name] = kill_and_wait(stack, name)

    result = drive_during(stack, posts, 12_000, killer)
    assert set(took) == set(ORDER)
    assert all(sec < RESTART_WITHIN_S for sec in took.values()), took
    for name in ORDER:
        assert stack_ops.restarts(stack, name) >= before[name] + 1, name
    assert result.acked > 5_000
    wrong = acknowledged_mismatches(stack, posts, result)
    assert not wrong, f"{len(wrong)} acknowledged states differ from the edge store"
    report = converge(stack, posts, timeout=240)
    assert report.clean, report.summary()
    for name in ORDER:
        wait_until(
            f"ComponentRestarted for {name}",
            partial(alert_firing, stack, "ComponentRestarted", name),
            60,
        )
