"""Waiting for the live stack: poll until a condition holds or fail with what was seen,
and ask Prometheus whether an alert fires."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from core.settings import CommonSettings
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
