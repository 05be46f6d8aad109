"""Waiting on the shared local stack: its health checks, and the live pipeline's backlog.

Others run fault tests on the same stack, so a benchmark first waits for the stack's own
health checks (``devstack.components``), and between phases until the live flows have
drained what the previous phase produced (their lag, as ``likes status`` computes it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.log import log
from core.settings import CommonSettings
from devstack import stack
from devstack.components import FLOW_NAMES, build_components
from ops.flow_status import end_offsets, flow_lag


@dataclass(frozen=True)
class Health:
    """Whether the stack was healthy, and how long that took."""

    healthy: bool
    waited_s: float
    unhealthy: list[str] = field(default_factory=list)


def _unhealthy(names: set[str]) -> list[str]:
    bad = []
    for c in build_components(CommonSettings()):
        if c.name not in names:
            continue
        try:
            if not c.healthy():
                bad.append(c.name)
        except Exception as e:
            bad.append(f"{c.name} ({type(e).__name__})")
    return bad


def wait_healthy(timeout: float = 180.0, need_flow: bool = False) -> Health:
    """Wait until the components a benchmark needs pass their health checks."""
    wanted = {"postgres", "redis", "kafka", "api"} | (
        {"connect", "flow-counts"} if need_flow else set()
    )
    t0 = time.monotonic()
    bad: list[str] = []
    while time.monotonic() - t0 < timeout:
        bad = _unhealthy(wanted)
        if not bad:
            waited = round(time.monotonic() - t0, 1)
            if waited > 1:
                log(f"stack healthy again after {waited}s")
            return Health(True, waited)
        time.sleep(2.0)
    log(f"stack not healthy after {timeout:.0f}s: {bad}")
    return Health(False, round(time.monotonic() - t0, 1), bad)


def live_lag() -> int | None:
    """Messages of the events topic not yet processed by the live flows (None if unknown)."""
    s = CommonSettings()
    try:
        ends = end_offsets(s.kafka_bootstrap, s.events_topic)
        return sum(int(flow_lag(s, name, ends)["lag"]) for name in FLOW_NAMES)
    except Exception:
        return None


@dataclass(frozen=True)
class Settled:
    """Whether the live pipeline drained its backlog before a phase."""

    settled: bool
    waited_s: float
    lag: int | None


def settle(timeout: float = 90.0, quiet_lag: int = 200) -> Settled:
    """Wait until the live pipeline has drained what earlier load produced.

    Otherwise the CDC and flow processes still chewing on a backlog take CPU from the
    next measurement. Drained: the live flows' lag below ``quiet_lag`` twice in a row,
    one second apart (so CDC is not still publishing).
    """
    t0 = time.monotonic()
    calm = 0
    lag = None
    while time.monotonic() - t0 < timeout and calm < 2:
        lag = live_lag()
        calm = calm + 1 if lag is not None and lag <= quiet_lag else 0
        if calm < 2:
            time.sleep(1.0)
    waited = round(time.monotonic() - t0, 1)
    if calm < 2:
        log(f"live pipeline still {lag} events behind after {waited}s; measuring anyway")
    return Settled(calm >= 2, waited, lag)


def require_live_flow(name: str = "flow-counts") -> int:
    """The PID of the live component ``name``; raises if it does not run."""
    pids = stack.running(CommonSettings())
    pid = pids.get(name)
    if not pid:
        raise RuntimeError(f"the live {name} is not running: {pids}")
    return pid
