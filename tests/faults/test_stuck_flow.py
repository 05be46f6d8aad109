"""A flow that is alive but stuck comes back by itself (``core.watchdog``), and its
projections converge exactly afterwards.

Against the live stack, no mocks: the live analytics flow's ClickHouse writes are made
to block without returning (the sink's ``{"hang": true}`` fault file), which leaves the
process alive, its flush thread holding the sink's lock and its main loop waiting for
it: the shape of the writers' deadlock of 2026-12-05, which the supervisor alone could
not see. Likes keep flowing through the API meanwhile. The process must end itself after
``flow_stall_s`` with every thread's stack in its log, be restarted by the supervisor,
and once the fault is gone ClickHouse must equal the edge store, like every other
projection; the other flows are not restarted; and the restart is an alert
(``ComponentRestarted``) that ``likes status`` shows.
"""

from __future__ import annotations

import json
import time

import pytest

from core import watchdog
from core.settings import CommonSettings, FlowSettings
from devstack import process
from devstack import stack as stack_ops
from ops.status import collect
from sinks.faults import fault_file
from tests.e2e.pipeline import acknowledged_mismatches, converge, drive, new_posts
from tests.faults.kill import wait_restarted
from tests.waiting import alert_firing, wait_until

pytestmark = pytest.mark.e2e

FLOW = "flow-analytics"
OTHERS = ("flow-counts", "flow-fanout")
SLACK_S = 45.0  # until the main loop blocks behind the hung write
ALERT_WITHIN_S = 90.0  # scrapes of the new process, then the rule's evaluation


def _pid(s: CommonSettings) -> int:
    pid = process.live_pid(stack_ops.pid_file(s, FLOW))
    assert pid is not None, f"{FLOW} is not running"
    return pid


def test_a_stuck_flow_ends_itself_and_its_projections_converge(stack: CommonSettings) -> None:
    stall_s = FlowSettings().flow_stall_s
    assert stall_s > 0, "the watchdog is off (LIKES_FLOW_STALL_S=0)"
    at_least_s = stall_s - watchdog.REARM_EVERY_S  # the last beat may not have re-armed
    posts = new_posts(stack, 40)
    drive(stack, posts, 300, concurrency=8)
    stuck_pid = _pid(stack)
    restarts = {name: stack_ops.restarts(stack, name) for name in (FLOW, *OTHERS)}
    log = stack.home / "log" / f"{FLOW}.log"
    log_from = log.stat().st_size
    hang = fault_file(stack.home, "clickhouse")
    hang.parent.mkdir(parents=True, exist_ok=True)
    hang.write_text(json.dumps({"hang": True}))
    t0 = time.monotonic()
    try:
        result = drive(stack, posts, 600, viral_share=0.3, concurrency=8)
        while process.pid_alive(stuck_pid):
            took = time.monotonic() - t0
            assert took < stall_s + SLACK_S, f"{FLOW} still stuck after {took:.0f} s"
            time.sleep(0.5)
        ended_after = time.monotonic() - t0
    finally:
        hang.unlink(missing_ok=True)
    wait_restarted(stack, FLOW, stuck_pid)  # by the supervisor alone, and healthy
    assert ended_after >= at_least_s, (
        f"{FLOW} died after {ended_after:.1f} s, before its stall limit of {stall_s:.0f} s"
    )
    with log.open("rb") as f:
        f.seek(log_from)
        dumped = f.read().decode(errors="replace")
    assert "Timeout (" in dumped and "most recent call first" in dumped, dumped[-2000:]
    assert "in with_fault" in dumped, "the dump does not show the hung write"
    assert stack_ops.restarts(stack, FLOW) == restarts[FLOW] + 1
    for name in OTHERS:
        assert stack_ops.restarts(stack, name) == restarts[name], f"{name} restarted"
    assert not acknowledged_mismatches(stack, posts, result)
    report = converge(stack, posts, timeout=240)
    assert report.clean, report.summary()
    # operators are told: the restart is an alert, and `likes status` shows it
    wait_until(
        "ComponentRestarted firing",
        lambda: alert_firing(stack, "ComponentRestarted", FLOW),
        ALERT_WITHIN_S,
    )
    shown = collect(stack)["warnings"]
    assert any(w.startswith(f"ALERT ComponentRestarted ({FLOW})") for w in shown), shown
