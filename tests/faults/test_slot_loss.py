"""A lost replication slot (issue 7, contract section 8): with Connect stopped, the slot
is dropped and likes keep being committed. Connect then refuses to start, loudly (the
component fails with the reason in its log, the slot stays missing rather than being
silently re-created past the lost events, ``likes status`` warns), until the runbook's
``likes cdc recover`` re-creates the slot and republishes the outbox. Afterwards every
projection equals the edge store, every acknowledged state is there, and it stays exact
under the next live likes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from core.settings import CommonSettings
from devstack import java_stack, local_servers
from devstack import stack as stack_ops
from devstack.supervisor import Supervisor
from loadgen.workload import WorkloadResult
from schemas.cdc import SLOT_NAME
from tests.e2e.pipeline import acknowledged_mismatches, converge, drive, new_posts

pytestmark = pytest.mark.e2e
LIKES = str(Path(sys.executable).with_name("likes"))
REFUSAL = f"replication slot {SLOT_NAME} is missing"


def _acked_states_hold(s: CommonSettings, posts: list[int], result: WorkloadResult) -> None:
    wrong = acknowledged_mismatches(s, posts, result)
    assert not wrong, f"{len(wrong)} acknowledged states differ from the edge store"


def _recover(s: CommonSettings) -> dict[str, object]:
    out = subprocess.run(
        [LIKES, "cdc", "recover", "--json"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    report: dict[str, object] = json.loads(out.stdout)
    return report


def test_a_lost_slot_is_refused_loudly_then_recovered_exactly(stack: CommonSettings) -> None:
    posts = new_posts(stack, 40)
    before = drive(stack, posts, 1_500, viral_share=0.3, unlike_share=0.3)
    assert not before.errors and converge(stack, posts).clean
    sup = Supervisor(stack)
    recovered = False
    try:
        sup.stop("connect")
        with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT_NAME,))
        gap = drive(stack, posts, 1_500, viral_share=0.3, unlike_share=0.3)
        assert not gap.errors and gap.acked > 1_000

        log = stack_ops.log_file(stack, "connect")
        offset = log.stat().st_size if log.exists() else 0
        sup.start("connect")
        deadline = time.monotonic() + 60
        while REFUSAL not in log.read_text(errors="replace")[offset:]:
            assert time.monotonic() < deadline, "Connect did not refuse to start"
            time.sleep(0.5)
        time.sleep(3)
        assert not local_servers.slot_exists(stack.postgres_url, SLOT_NAME), "no silent slot"
        assert java_stack.connector_state(stack.connect_url) != "RUNNING"
        status = subprocess.run(
            [LIKES, "status", "--json"], capture_output=True, text=True, timeout=120
        )
        report = json.loads(status.stdout)
        assert status.returncode == 1 and report["slot"]["present"] is False
        assert any("replication slot" in w for w in report["warnings"]), report["warnings"]

        recovery = _recover(stack)
        recovered = True
        assert recovery["slot"] == "created", recovery
        assert (
            isinstance(recovery["republished"], int) and recovery["republished"] >= gap.acked // 2
        )
    finally:
        if not recovered:  # leave a working stack to the tests after this one
            _recover(stack)

    assert local_servers.slot_exists(stack.postgres_url, SLOT_NAME)
    report_ = converge(stack, posts, timeout=300)
    assert report_.clean, report_.summary()
    _acked_states_hold(stack, posts, gap)
    after = drive(stack, posts, 1_000, viral_share=0.3, unlike_share=0.3)
    assert not after.errors
    report_ = converge(stack, posts, timeout=240)
    assert report_.clean, report_.summary()
    _acked_states_hold(stack, posts, after)
