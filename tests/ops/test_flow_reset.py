"""``likes flows-reset`` (README runbook: lost recovery store) under live traffic.

Every flow's recovery store is deleted while the flows run and a workload drives likes,
some projections are wiped too, and the operator runs the one command. Afterwards every
count projection (Redis, ``post_like_counts``, ClickHouse windows) equals the edge store,
every acknowledged state is in the edge store, the flows started from the topics' end
(not the start of retention), and all of it stays exact with the next 1,000 live likes:
the counts flow adopted the rebuild and the reset analytics flow's window rows add to
those of the lost state instead of replacing them. The recent likers lists follow those
likes too: the fanout flow adopted the rebuild's ``seq`` (without it, the reset flow's
lists sit below the stored ``seq`` and are refused).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest

from core.settings import CommonSettings, FlowSettings
from flows.runner import FLOWS
from tests.e2e.pipeline import acknowledged_mismatches, converge, drive, new_posts
from tests.e2e.read_models import edge_store_recent, redis_recent
from tests.ops.backfill_runs import LIKES, wipe_projections
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_flows_reset_restores_every_count_after_the_recovery_store_is_lost(
    stack: CommonSettings,
) -> None:
    posts = new_posts(stack, 80)
    drive(stack, posts, 1_500, viral_share=0.3, concurrency=16)  # state the flows will lose
    reports: list[dict[str, Any]] = []
    failures: list[str] = []

    def operator() -> None:
        time.sleep(5)
        for flow in FLOWS:
            shutil.rmtree(FlowSettings().recovery_path(flow), ignore_errors=True)
        wipe_projections(stack, posts[:40])
        done = subprocess.run(
            [LIKES, "flows-reset", "--yes", "--json"], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            failures.append(f"exit {done.returncode}: {done.stdout[-3000:]} {done.stderr[-3000:]}")
        else:
            reports.append(json.loads(done.stdout))

    t = threading.Thread(target=operator)
    t.start()
    # one client process: the acknowledged record below must be the only writer of its edges
    result = drive(stack, posts, 4_000, viral_share=0.3, unlike_share=0.3, concurrency=16)
    t.join()
    assert not failures, failures[0]
    report = reports[0]
    assert result.acked > 2_000, result
    assert sorted(report["stopped"]) == sorted(report["started"]) and report["started"]
    starts = report["start_offsets"][stack.events_topic]
    assert starts and all(o > 0 for o in starts.values()), starts  # not from retention's start
    assert not report["backfill"]["unsettled"], report["backfill"]
    assert not acknowledged_mismatches(stack, posts, result)
    assert converge(stack, posts, timeout=240).clean
    drive(stack, posts, 1_000, viral_share=0.3, concurrency=16, first_user=10**9)
    assert converge(stack, posts, timeout=180).clean
    truth = edge_store_recent(stack, posts)
    assert any(u >= 10**9 for users in truth.values() for u in users), "new likers lead"
    wait_for("recent likers", lambda: redis_recent(stack, posts), lambda got: got == truth, 120)
