"""``kill -9`` of each flow process mid-stream, restarted by the supervisor alone: every
projection exact."""

from __future__ import annotations

import threading
import time

import pytest

from core.settings import CommonSettings
from tests.e2e.pipeline import assert_fanout_converges, converge, drive, new_posts
from tests.faults.kill import kill_and_wait

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("flow", ["flow-counts", "flow-fanout", "flow-analytics"])
def test_kill_flow_mid_stream(stack: CommonSettings, flow: str) -> None:
    posts = new_posts(stack, 200)
    done = threading.Event()

    def killer() -> None:
        time.sleep(4)
        kill_and_wait(stack, flow)
        time.sleep(3)
        kill_and_wait(stack, flow)  # and once more, right after a restart
        done.set()

    t = threading.Thread(target=killer)
    t.start()
    result = drive(stack, posts, 10_000, viral_share=0.3)
    t.join()
    assert done.is_set() and not result.errors
    report = converge(stack, posts)
    assert report.clean, report.summary()
    assert_fanout_converges(stack, posts)
