"""Bring the local stack up, down, or run it in the foreground.

``up`` is idempotent: a component whose PID file names a live process is left alone
(once healthy); a dead one is started again. ``down`` stops everything, keeping data.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

from core.settings import REPO_ROOT, CommonSettings
from devstack import process
from devstack.components import Component, build_components

log = logging.getLogger(__name__)


START_ATTEMPTS = 2


class StackError(RuntimeError):
    """A component could not be started or did not become healthy."""


def pid_file(s: CommonSettings, name: str) -> Path:
    """The PID file of component ``name``."""
    return s.home / "run" / f"{name}.pid"


def log_file(s: CommonSettings, name: str) -> Path:
    """The log file of component ``name``."""
    return s.home / "log" / f"{name}.log"


def _wait_healthy(
    s: CommonSettings, comp: Component, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``comp`` is healthy; fail early if it exited.

    A process we just spawned is judged by its exit status, not by its command line,
    which only shows the marker once ``exec`` has happened.
    """
    deadline = time.monotonic() + comp.start_timeout
    while time.monotonic() < deadline:
        if comp.healthy():
            return
        exited = (
            (proc.poll() is not None)
            if proc is not None
            else (process.alive(pid_file(s, comp.name), comp.marker) is None)
        )
        if exited:
            raise StackError(f"{comp.name} exited during start-up; see {log_file(s, comp.name)}")
        time.sleep(0.25)
    raise StackError(
        f"{comp.name} not healthy after {comp.start_timeout:.0f}s; see {log_file(s, comp.name)}"
    )


def _healthy_within(comp: Component, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not comp.healthy():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def ensure_component(s: CommonSettings, comp: Component) -> bool:
    """Start ``comp`` unless it already runs; wait until healthy. True if it was started."""
    pf = pid_file(s, comp.name)
    started = False
    if process.alive(pf, comp.marker) is not None and not _healthy_within(comp, 30):
        log.warning("%s runs but is not healthy; restarting it", comp.name)
        process.stop(pf, comp.marker, timeout=30)
    if process.alive(pf, comp.marker) is not None:
        _wait_healthy(s, comp)
    else:
        for attempt in range(1, START_ATTEMPTS + 1):
            comp.prepare()
            log.info("starting %s", comp.name)
            proc = process.spawn(
                comp.argv(),
                pid_file=pf,
                log_file=log_file(s, comp.name),
                env=comp.env(),
                cwd=REPO_ROOT,
                user=comp.user,
            )
            started = True
            try:
                _wait_healthy(s, comp, proc)
                break
            except StackError:
                if attempt == START_ATTEMPTS:
                    raise
                log.warning("%s did not come up (attempt %d); retrying", comp.name, attempt)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    comp.after_healthy()  # idempotent: migrations, topics
    return started


def up(s: CommonSettings, only: list[str] | None = None) -> dict[str, float]:
    """Start every missing component in order; return seconds spent per component."""
    timings: dict[str, float] = {}
    for comp in build_components(s):
        if only and comp.name not in only:
            continue
        t0 = time.monotonic()
        ensure_component(s, comp)
        timings[comp.name] = time.monotonic() - t0
    return timings


def down(s: CommonSettings) -> list[str]:
    """Stop every running component in reverse order; return the names stopped."""
    stopped = []
    for comp in reversed(build_components(s)):
        if process.stop(pid_file(s, comp.name), comp.marker, timeout=60):
            stopped.append(comp.name)
    return stopped


def running(s: CommonSettings) -> dict[str, int | None]:
    """PID of each component, or None where it is not running."""
    return {c.name: process.alive(pid_file(s, c.name), c.marker) for c in build_components(s)}
