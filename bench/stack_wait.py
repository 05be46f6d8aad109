"""Waiting on the shared local stack: its health checks, and the live pipeline's backlog.

Others run fault tests on the same stack, so a benchmark first waits for the stack's own
health checks (``devstack.components``), and between phases until the live flows have
drained what the previous phase produced (their lag, as ``likes status`` computes it).
Components are named as in either profile: every member of a component counts
(``kafka`` or ``kafka-0..2``, ``flow-counts`` or ``flow-counts-0/1``; ``core.topology``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from bench.log import log
from core.settings import CommonSettings
from core.topology import component_of
from devstack import stack
from devstack.components import FLOW_NAMES, build_components
from devstack.java_stack import connector_state
from devstack.supervisor import Supervisor
from ops.cdc import cdc_lag
from ops.flow_status import end_offsets, flow_lag
from schemas.cdc import CONNECTOR_NAME


@dataclass(frozen=True)
class Health:
    """Whether the stack was healthy, and how long that took."""

    healthy: bool
    waited_s: float
    unhealthy: list[str] = field(default_factory=list)


BASE_COMPONENTS = ("postgres", "redis", "kafka", "api")


def members(components: set[str]) -> list[str]:
    """The members of ``components`` in the current profile, in start order."""
    comps = build_components(CommonSettings())
    return [c.name for c in comps if component_of(c.name) in components]


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


def topology_mismatch() -> str | None:
    """Why this process's settings do not describe the running stack, or None.

    Every process reads the topology from its own ``LIKES_*`` variables: a benchmark run
    without the variables the stack was started with (``LIKES_API_PROCESSES``,
    ``LIKES_PROFILE``) would look for processes that are not there and leave out of its
    CPU accounting the ones that are, while the shared ports still answer."""
    s = CommonSettings()
    running = set(Supervisor(s).programs())
    expected = {c.name for c in build_components(s)}
    if not running or running == expected:
        return None
    return (
        f"the stack runs {sorted(running - expected)} where these settings expect "
        f"{sorted(expected - running)}: run the benchmark with the LIKES_* variables the "
        "stack was started with"
    )


def wait_healthy(timeout: float = 180.0, flows: tuple[str, ...] = ()) -> Health:
    """Wait until every member of the components a benchmark needs passes its health
    check: the stores, Kafka and the API, and with ``flows`` also Connect and those
    flows (names as in ``FLOW_NAMES``)."""
    wanted = set(BASE_COMPONENTS) | ({"connect"} | {f"flow-{f}" for f in flows} if flows else set())
    names = set(members(wanted))
    t0 = time.monotonic()
    bad: list[str] = []
    while time.monotonic() - t0 < timeout:
        bad = _unhealthy(names)
        if not bad:
            waited = round(time.monotonic() - t0, 1)
            if waited > 1:
                log(f"stack healthy again after {waited}s")
            return Health(True, waited)
        time.sleep(2.0)
    log(f"stack not healthy after {timeout:.0f}s: {bad}")
    return Health(False, round(time.monotonic() - t0, 1), bad)


def flow_lags() -> dict[str, int] | None:
    """Messages of the events topic not yet processed, per live flow (None if unknown)."""
    s = CommonSettings()
    try:
        ends = end_offsets(s.kafka_bootstrap, s.events_topic)
        return {name: int(flow_lag(s, name, ends)["lag"]) for name in FLOW_NAMES}
    except Exception:
        return None


def live_lag() -> int | None:
    """Messages of the events topic not yet processed by the live flows (None if unknown)."""
    lags = flow_lags()
    return None if lags is None else sum(lags.values())


@dataclass(frozen=True)
class LagSample:
    """How far behind the pipeline is at one moment, as ``likes status`` computes it."""

    cdc_s: float | None  # newest outbox commit to newest event on Kafka (ops.cdc)
    cdc_unconfirmed_wal_bytes: int | None  # WAL the slot has not confirmed yet
    flows: dict[str, int] | None  # messages behind, per flow


def lag_sample() -> LagSample:
    """CDC's lag and each live flow's lag, now (None where unknown)."""
    s = CommonSettings()
    try:
        cdc = cdc_lag(s.postgres_url, s.kafka_bootstrap, s.events_topic)
    except Exception:
        cdc = {}
    slot = cdc.get("slot") or {}
    wal = slot.get("unconfirmed_wal_bytes")
    return LagSample(cdc.get("lag_seconds"), None if wal is None else int(wal), flow_lags())


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


def require_live_flow(name: str = "flow-counts") -> list[int]:
    """The PIDs of the members of the live component ``name``; raises if one does not
    run."""
    pids = stack.running(CommonSettings())
    wanted = members({name})
    missing = [m for m in wanted if not pids.get(m)]
    if not wanted or missing:
        raise RuntimeError(f"the live {name} is not running ({missing or name}): {pids}")
    return [pid for m in wanted if (pid := pids.get(m))]


@contextmanager
def paused_pipeline() -> Iterator[list[str]]:
    """The live pipeline paused, for measuring the write path alone: the Debezium
    connector paused (Connect's REST API; the slot keeps the WAL) and every flow member
    stopped; afterwards both resumed, whatever happened, and the backlog drained. Yields
    the flow members stopped."""
    s = CommonSettings()
    base = f"{s.connect_url.rstrip('/')}/connectors/{CONNECTOR_NAME}"
    sup = Supervisor(s)
    flows = members({f"flow-{name}" for name in FLOW_NAMES})
    httpx.put(f"{base}/pause", timeout=10).raise_for_status()
    stopped = [m for m in flows if sup.stop(m)]
    deadline = time.monotonic() + 30
    while connector_state(s.connect_url) != "PAUSED" and time.monotonic() < deadline:
        time.sleep(0.5)
    log(f"pipeline paused (connector {connector_state(s.connect_url)}, stopped {stopped})")
    try:
        yield stopped
    finally:
        httpx.put(f"{base}/resume", timeout=10).raise_for_status()
        for m in stopped:
            sup.start(m)
        log(f"pipeline resumed: {settle(timeout=300)}")
