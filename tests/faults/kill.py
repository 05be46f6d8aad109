"""Killing real components by PID, and waiting for the supervisor (alone) to restart them."""

from __future__ import annotations

import os
import signal
import time

from core.settings import CommonSettings
from devstack import process, stack
from devstack.components import by_name

RESTART_WITHIN_S = 30.0


def kill9(s: CommonSettings, name: str, *, group: bool = False) -> int:
    """SIGKILL component ``name`` (by its PID file); wait until it is gone.

    ``group`` kills its whole process group too (all of a server's children: host loss).
    """
    pid = process.live_pid(stack.pid_file(s, name))
    assert pid is not None, f"{name} is not running"
    if group:
        os.killpg(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process.pid_alive(pid):
        assert time.monotonic() < deadline, f"{name} survived SIGKILL"
        time.sleep(0.05)
    return pid


def wait_restarted(s: CommonSettings, name: str, old_pid: int) -> float:
    """Seconds until the supervisor runs ``name`` again under a new live PID (at most
    ``RESTART_WITHIN_S``), then wait until it is healthy again. Nothing here starts it."""
    t0 = time.monotonic()
    while True:
        pid = process.live_pid(stack.pid_file(s, name))
        if pid is not None and pid != old_pid:
            break
        assert time.monotonic() - t0 < RESTART_WITHIN_S, f"{name} not restarted in time"
        time.sleep(0.1)
    restarted = time.monotonic() - t0
    comp = by_name(s, name)
    deadline = time.monotonic() + comp.start_timeout
    while not comp.healthy():
        assert time.monotonic() < deadline, f"{name} restarted but never became healthy"
        time.sleep(0.25)
    return restarted


def kill_and_wait(s: CommonSettings, name: str, *, group: bool = False) -> float:
    """``kill -9`` component ``name`` and wait until the supervisor has it healthy again."""
    return wait_restarted(s, name, kill9(s, name, group=group))
