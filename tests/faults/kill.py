"""Killing real components by PID, and bringing them back with the project's ``up``."""

from __future__ import annotations

import os
import signal
import time

from core.settings import CommonSettings
from devstack import process, stack
from devstack.components import build_components


def _dead(pid: int) -> bool:
    """Gone, or a zombie: it has finished exiting."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def kill9(s: CommonSettings, name: str, *, group: bool = False) -> int:
    """SIGKILL component ``name`` (by its PID file); wait until it is gone.

    ``group`` kills its whole process group too (all of a server's children: host loss).
    """
    comp = next(c for c in build_components(s) if c.name == name)
    pid = process.alive(stack.pid_file(s, name), comp.marker)
    assert pid is not None, f"{name} is not running"
    if group:
        os.killpg(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not _dead(pid):
        assert time.monotonic() < deadline, f"{name} survived SIGKILL"
        time.sleep(0.05)
    return pid


def make_up(s: CommonSettings) -> None:
    """What an operator runs after a crash: ``make up``."""
    stack.up(s)
