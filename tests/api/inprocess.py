"""Running the API app in the test process."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_restored() -> Iterator[tuple[int, int, int]]:
    """Undo what an app's start-up does to this process's collector (it freezes objects
    and sets thresholds) when a test runs the app in-process; the thresholds before."""
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
