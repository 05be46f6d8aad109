"""A backfill killed with ``kill -9`` is read as died once its heartbeats stop, so the
dead letters committed after it are no longer held up by a run that will never end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from core.settings import CommonSettings
from ops import backfill_runs, status
from ops.backfill import REBUILT
from ops.backfill_runs import BackfillRun, Coverage, coverage
from schemas.redis_keys import BACKFILL_RUNS_KEY

pytestmark = pytest.mark.integration  # needs the stack

BEAT_S = 0.2
CHILD = """
import time
from datetime import UTC, datetime
from core.settings import CommonSettings
from ops import backfill_runs
from ops.backfill import REBUILT

s = CommonSettings()
now = datetime.now(UTC)
run = backfill_runs.BackfillRun(now, None, REBUILT, "running", heartbeat_at=now)
backfill_runs.record(s, run)
print(now.isoformat(), flush=True)
with backfill_runs.heartbeats(s, run):
    time.sleep(3600)
"""


def _mine(s: CommonSettings, started: datetime) -> BackfillRun:
    found = [r for r in backfill_runs.runs(s) if r.started_at == started]
    assert len(found) == 1
    return found[0]


def test_a_killed_backfill_is_read_as_died_after_its_heartbeats_stop(
    stack: CommonSettings,
) -> None:
    s = stack.model_copy(update={"backfill_heartbeat_s": BEAT_S})
    env = os.environ | {"LIKES_BACKFILL_HEARTBEAT_S": str(BEAT_S)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    started = datetime.fromisoformat(child.stdout.readline().strip())
    try:
        deadline = time.monotonic() + 30
        while (beat := _mine(s, started).heartbeat_at) == started:
            assert time.monotonic() < deadline, "no heartbeat within 30 s"
            time.sleep(BEAT_S / 2)
        assert beat is not None and beat > started
        time.sleep(3 * BEAT_S)
        alive = _mine(s, started)
        assert alive.status == "running", "alive: its record keeps being refreshed"
        assert alive.heartbeat_at is not None and alive.heartbeat_at > beat

        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 30
        while (dead := _mine(s, started)).status == "running":
            assert time.monotonic() < deadline, "still read as running 30 s after the kill"
            time.sleep(BEAT_S)
        assert dead.status == "died"
        assert dead.heartbeat_at is not None and dead.ended_at is not None
        assert dead.ended_at == dead.heartbeat_at + timedelta(seconds=BEAT_S)
        assert dead.ended_at <= datetime.now(UTC)

        # `likes status` names it (the latest run) and warns
        latest = status._backfill(s)
        assert latest["last"]["status"] == "died"
        report = {"backfill": latest, "alerts": [], "slot": {"error": "-"}}
        assert any("died" in w and started.isoformat() in w for w in status.warnings(report))

        # a dead letter committed after it died: the run does not hold it up any more
        later = datetime.now(UTC)
        verdict = coverage([dead], later + timedelta(seconds=1), later, REBUILT)
        assert verdict.coverage is Coverage.NONE, verdict.detail
        # one committed while it ran may have been applied by it: still uncertain
        verdict = coverage([dead], dead.ended_at, started + timedelta(microseconds=1), REBUILT)
        assert verdict.coverage is Coverage.UNCERTAIN
    finally:
        if child.poll() is None:
            child.kill()
        backfill_runs.client(s).hdel(BACKFILL_RUNS_KEY, started.isoformat())
