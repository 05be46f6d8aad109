"""A test hook: slow down or fail a sink's writes in a running flow, without mocks.

A sink given a fault file (``<home>/faults/<sink>.json``, :func:`fault_file`) reads it
before every batch; with no file it writes normally. The file holds a JSON object:

- ``{"slowdown": 10}``: each write takes 10 times as long as it did (the sink sleeps
  nine times the write's own duration after it);
- ``{"delay_ms": 200}``: plus a fixed delay per batch (combinable with ``slowdown``);
- ``{"fail": true}``: every write raises :class:`InjectedFault` before touching the
  store. Sinks treat it as transient, so it is retried within their retry budget, and
  past the budget the flow stops and resumes from its last snapshot, as a real outage;
- ``{"hang": true}``: a write blocks, without raising and without retrying, for as long
  as the file says so (it is re-read every ``HANG_POLL_S``), then writes: a write that
  never returns, as in a deadlock, which the flow's watchdog (``core.watchdog``) is
  there to end.

Removing the file ends the fault at the next batch (or retry). A file that is not such
an object is ignored with a warning. Meant for end-to-end tests (``tests/e2e``); nothing
in production writes these files.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
HANG_POLL_S = 0.2


class InjectedFault(RuntimeError):
    """A write failed on purpose (a fault file said ``"fail": true``)."""


@dataclass(frozen=True)
class WriteFault:
    """What a fault file asks for."""

    slowdown: float = 1.0
    delay_ms: float = 0.0
    fail: bool = False
    hang: bool = False


def fault_file(home: Path, sink: str) -> Path:
    """The fault file of ``sink`` (e.g. ``clickhouse``) under the runtime directory."""
    return home / "faults" / f"{sink}.json"


def read_fault(path: Path | None) -> WriteFault | None:
    """The fault ``path`` asks for; None without a file (or without a path)."""
    if path is None:
        return None
    try:
        raw = json.loads(path.read_text())
        return WriteFault(
            slowdown=max(1.0, float(raw.get("slowdown", 1.0))),
            delay_ms=max(0.0, float(raw.get("delay_ms", 0.0))),
            fail=bool(raw.get("fail", False)),
            hang=bool(raw.get("hang", False)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as e:
        log.warning("ignoring fault file %s: %s", path, e)
        return None


def with_fault(path: Path | None, write: Callable[[], T]) -> T:
    """Run ``write`` as the fault file at ``path`` says: hang first, fail, or slow it down."""
    fault = read_fault(path)
    while fault is not None and fault.hang:
        time.sleep(HANG_POLL_S)
        fault = read_fault(path)
    if fault is None:
        return write()
    if fault.fail:
        raise InjectedFault(f"write failed on purpose ({path})")
    t0 = time.monotonic()
    result = write()
    time.sleep((fault.slowdown - 1) * (time.monotonic() - t0) + fault.delay_ms / 1000)
    return result
