"""Bring the local stack up, down, or report what runs.

``up`` is idempotent: it makes sure supervisord runs with every component's program,
then walks the components in dependency order, starts each one supervisord is not
running, and waits until it is healthy before the next (a component that runs but is
unhealthy is left to finish starting, then restarted once). ``down`` stops every
component in reverse order and then supervisord, keeping all data. Between the two,
supervisord alone restarts whatever dies.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from core.settings import CommonSettings
from devstack import paths, process
from devstack.components import Component, build_components, check_profile
from devstack.supervisor import Supervisor

log = logging.getLogger(__name__)

_UP_STATES = ("RUNNING", "STARTING", "BACKOFF")


class StackError(RuntimeError):
    """A component could not be started or did not become healthy."""


def pid_file(s: CommonSettings, name: str) -> Path:
    """The PID file of component ``name``."""
    return paths.pid_file(s, name)


def log_file(s: CommonSettings, name: str) -> Path:
    """The log file of component ``name``."""
    return paths.log_file(s, name)


def _programs(comps: list[Component]) -> list[tuple[str, str, bool]]:
    return [(c.name, c.stop_signal, c.stop_as_group) for c in comps]


def _log_tail(s: CommonSettings, name: str, lines: int = 15) -> str:
    try:
        return "\n".join(log_file(s, name).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_healthy(s: CommonSettings, sup: Supervisor, comp: Component) -> None:
    """Wait until ``comp`` is healthy; fail early if supervisord gave up on it."""
    deadline = time.monotonic() + comp.start_timeout
    while time.monotonic() < deadline:
        if comp.healthy():
            return
        info = sup.info(comp.name) or {}
        if info.get("statename") in ("FATAL", "EXITED", "STOPPED"):
            raise StackError(
                f"{comp.name} is {info.get('statename')}; last lines of "
                f"{log_file(s, comp.name)}:\n{_log_tail(s, comp.name)}"
            )
        time.sleep(0.25)
    raise StackError(
        f"{comp.name} not healthy after {comp.start_timeout:.0f}s; last lines of "
        f"{log_file(s, comp.name)}:\n{_log_tail(s, comp.name)}"
    )


def ensure_component(s: CommonSettings, sup: Supervisor, comp: Component) -> bool:
    """Start ``comp`` unless supervisord runs it; wait until healthy. True if started."""
    started = _start(sup, comp)
    _settle(s, sup, comp, started)
    return started


def _start(sup: Supervisor, comp: Component) -> bool:
    """Ask supervisord to start ``comp`` unless it runs it; True if asked."""
    state = (sup.info(comp.name) or {}).get("statename")
    if state in _UP_STATES:
        return False
    comp.setup()
    log.info("starting %s", comp.name)
    sup.start(comp.name)
    return True


def _settle(s: CommonSettings, sup: Supervisor, comp: Component, started: bool) -> None:
    """Wait until ``comp`` is healthy (restarting it once if it ran unhealthy before this
    ``up``), then run its ``after_healthy``."""
    try:
        _wait_healthy(s, sup, comp)
    except StackError:
        if started:
            raise
        log.warning("%s runs but is not healthy; restarting it", comp.name)
        sup.stop(comp.name)
        sup.start(comp.name)
        _wait_healthy(s, sup, comp)
    comp.after_healthy()  # idempotent: migrations, topics


def _batches(comps: list[Component]) -> list[list[Component]]:
    """Consecutive members of one ``group`` form one batch; every other component is a
    batch of its own."""
    out: list[list[Component]] = []
    for comp in comps:
        if out and comp.group is not None and out[-1][-1].group == comp.group:
            out[-1].append(comp)
        else:
            out.append([comp])
    return out


def up(s: CommonSettings, only: list[str] | None = None) -> dict[str, float]:
    """Start every missing component in order (the members of a group together: a
    Kafka quorum, a Bytewax cluster); return seconds spent per component."""
    check_profile(s)
    comps = build_components(s)
    sup = Supervisor(s)
    if sup.ensure(_programs(comps)):
        for comp in comps:  # restart counts are per supervisord lifetime
            paths.starts_file(s, comp.name).unlink(missing_ok=True)
    timings: dict[str, float] = {}
    for batch in _batches(comps):
        batch = [c for c in batch if not only or c.name in only]
        t0 = time.monotonic()
        started = {c.name: _start(sup, c) for c in batch}
        for comp in batch:
            _settle(s, sup, comp, started[comp.name])
            timings[comp.name] = time.monotonic() - t0
    return timings


def down(s: CommonSettings) -> list[str]:
    """Stop every running component in reverse order, then supervisord; return the names
    stopped."""
    sup = Supervisor(s)
    stopped: list[str] = []
    if sup.pid() is None or not sup.reachable():
        return stopped
    for comp in reversed(build_components(s)):
        if sup.stop(comp.name):
            stopped.append(comp.name)
        pid_file(s, comp.name).unlink(missing_ok=True)
    sup.shutdown()
    return stopped


def running(s: CommonSettings) -> dict[str, int | None]:
    """PID of each component, or None where it is not running."""
    return {c.name: process.live_pid(pid_file(s, c.name)) for c in build_components(s)}


def restarts(s: CommonSettings, name: str) -> int:
    """How often supervisord restarted ``name`` since the stack came up."""
    return max(0, paths.read_count(paths.starts_file(s, name)) - 1)
