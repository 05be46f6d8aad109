"""Killing real components by PID, and bringing them back with the project's ``up``."""

from __future__ import annotations

import os
import signal
import time

from ops import process, stack
from ops.components import build_components
from ops.settings import CommonSettings


def kill9(s: CommonSettings, name: str) -> int:
    """SIGKILL component ``name`` (by its PID file); wait until it is gone."""
    comp = next(c for c in build_components(s) if c.name == name)
    pid = process.alive(stack.pid_file(s, name), comp.marker)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process.alive(stack.pid_file(s, name), comp.marker) is not None:
        assert time.monotonic() < deadline, f"{name} survived SIGKILL"
        time.sleep(0.05)
    return pid


def make_up(s: CommonSettings) -> None:
    """What an operator runs after a crash: ``make up``."""
    stack.up(s)
