"""The system's own figures over a span (``ops.system_figures``, what ``make demo``
prints): read from the stack's real Prometheus, they count exactly what was done in the
span, and the demo prints them with its load generator's cost."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import httpx
import pytest

from core.settings import CommonSettings
from devstack.components import FLOW_NAMES
from ops.flow_status import wait_drained
from ops.system_figures import SETTLE_S, measure
from tests.conftest import auth, fresh_id
from tests.e2e.pipeline import new_posts

pytestmark = pytest.mark.e2e


async def _like_each(s: CommonSettings, posts: list[int], users: list[int]) -> int:
    """Like every post by every user, 16 at a time; the 200s."""
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=s.api_url, timeout=30) as c:

        async def one(post: int, user: int) -> int:
            async with gate:
                r = await c.post(f"/v1/posts/{post}/like", headers=auth(s, user))
                return r.status_code

        codes = await asyncio.gather(*(one(p, u) for p in posts for u in users))
    return codes.count(200)


def test_the_figures_count_exactly_what_the_span_held(stack: CommonSettings) -> None:
    assert wait_drained(stack, FLOW_NAMES, 120) is not None  # earlier tests' events done
    time.sleep(SETTLE_S)
    posts = new_posts(stack, 10)
    users = [fresh_id() for _ in range(30)]
    start = time.time()
    assert asyncio.run(_like_each(stack, posts, users)) == 300  # 300 new edges: 300 changes
    assert asyncio.run(_like_each(stack, posts[:2], users)) == 60  # again: applied, no change
    assert wait_drained(stack, FLOW_NAMES, 120) is not None
    time.sleep(SETTLE_S)
    f = measure(stack, start, time.time(), busy_s=1.0)  # rates over 1 s: the counts
    assert f.unavailable is None
    assert f.applied_per_s == pytest.approx(360)
    assert f.changed_per_s == pytest.approx(300)
    assert f.flow_events_per_s == pytest.approx(dict.fromkeys(sorted(FLOW_NAMES), 300.0))
    assert f.freshness_p50_s is not None and f.freshness_p99_s is not None
    assert 0 < f.freshness_p50_s <= f.freshness_p99_s < 60
    assert f.cdc_lag_max_s is not None and sorted(f.flow_lag_max) == sorted(FLOW_NAMES)


def test_figures_without_prometheus_say_why(stack: CommonSettings) -> None:
    gone = stack.model_copy(update={"prometheus_url": "http://127.0.0.1:9"})
    f = measure(gone, time.time() - 30, time.time(), busy_s=30)
    assert f.unavailable and "127.0.0.1:9" in f.unavailable
    assert f.applied_per_s is None and not f.flow_events_per_s


def test_the_demo_prints_the_system_figures_and_its_own_cost(stack: CommonSettings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadgen.demo", "--operations", "600", "--posts", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out[-2000:] + done.stderr[-2000:]
    changed = re.search(r"\(([\d,]+)/s changed an edge", out)
    flows = re.search(r"events through the flows: (.*)", out)
    assert changed and flows, out
    # every flow saw exactly the events the API's changes made
    rates = dict(re.findall(r"(\w+) ([\d,]+)/s", flows[1]))
    assert sorted(rates) == sorted(FLOW_NAMES) and set(rates.values()) == {changed[1]}, out
    assert re.search(r"freshness \(outbox commit to Redis count\): p50 [\d,]+ ms", out), out
    assert re.search(r"its own CPU: [\d,]+ µs per request", out), out
    assert out.count("'drifting_posts': 0") == 3, out
