"""``kill -9`` of the counts flow mid-stream, then ``make up``: every projection exact."""

from __future__ import annotations

import threading
import time

import pytest

from ops.settings import CommonSettings
from tests.e2e.pipeline import converge, drive, new_posts
from tests.faults.kill import kill9, make_up

pytestmark = pytest.mark.e2e


def test_kill_counts_flow_mid_stream(stack: CommonSettings) -> None:
    posts = new_posts(stack, 200)
    done = threading.Event()

    def killer() -> None:
        time.sleep(4)
        kill9(stack, "flow-counts")
        time.sleep(1)
        make_up(stack)
        time.sleep(3)
        kill9(stack, "flow-counts")  # and once more, right after a restart
        make_up(stack)
        done.set()

    t = threading.Thread(target=killer)
    t.start()
    result = drive(stack, posts, 12_000, viral_share=0.3)
    t.join()
    assert done.is_set() and not result.errors
    report = converge(stack, posts)
    assert report.clean, report.summary()
