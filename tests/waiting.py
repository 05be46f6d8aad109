"""Waiting for the live stack: poll until a condition holds or fail with what was seen,
wait for a flow to catch up with the events topic, and ask Prometheus whether an alert
fires."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from core.settings import CommonSettings
from ops.flow_status import end_offsets, flow_lag
from ops.prometheus_api import firing_alerts

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T], done: Callable[[T], bool], timeout: float, every: float = 1.0
) -> T:
    """``probe()`` once ``done`` accepts it; an AssertionError naming ``what`` and the last
    value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {value!r}")
        time.sleep(every)


def wait_until(what: str, fn: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """``fn()`` once it is truthy (see :func:`wait_for`)."""
    value = wait_for(what, fn, bool, timeout, every)
    assert value is not None
    return value


def flow_caught_up(
    s: CommonSettings, flow: str, *, slack: int = 0, moving: bool = False, timeout: float = 180.0
) -> None:
    """Wait until ``flow`` has read to within ``slack`` messages of the events topic's
    end: the end when this is called, or with ``moving`` the end at each look (for a
    topic that load keeps writing)."""
    fixed = None if moving else end_offsets(s.kafka_bootstrap, s.events_topic)
    wait_for(
        f"{flow} within {slack} messages of the end",
        lambda: flow_lag(s, flow, fixed or end_offsets(s.kafka_bootstrap, s.events_topic))["lag"],
        lambda lag: lag <= slack,
        timeout,
    )


def fanout_caught_up(s: CommonSettings, timeout: float = 120) -> None:
    """The fanout flow has read everything on the events topic now, and had a moment
    to write it."""
    flow_caught_up(s, "fanout", timeout=timeout)
    time.sleep(3)


def alert_firing(s: CommonSettings, name: str, component: str) -> dict[str, Any] | None:
    """The alert ``name`` firing for ``component`` now, if it is."""
    return next(
        (
            a
            for a in firing_alerts(s.prometheus_url)
            if a["name"] == name and a["labels"].get("component") == component
        ),
        None,
    )
