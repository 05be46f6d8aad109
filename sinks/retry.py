"""Bounded retries of transient store errors, so a short outage does not crash a flow.

Only errors the caller marks transient are retried, with exponential backoff, for at
most ``budget_s`` seconds; then the last error is raised as :class:`SinkError` and the
flow resumes from its snapshot once restarted. Retrying is safe because every sink
write is idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sinks.errors import SinkError

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_retries(
    what: str,
    fn: Callable[[], T],
    transient: tuple[type[BaseException], ...],
    *,
    budget_s: float = 60.0,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """``fn()``, retried on ``transient`` errors until ``budget_s`` is spent."""
    deadline = time.monotonic() + budget_s
    delay = 0.1
    while True:
        try:
            return fn()
        except transient as e:
            if time.monotonic() + delay > deadline:
                raise SinkError(f"{what}: giving up after {budget_s:.0f}s: {e}") from e
            log.warning("%s failed (%s); retrying in %.1fs", what, e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            if on_retry is not None:
                on_retry()
