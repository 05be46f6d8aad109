"""What a sink wrote, counted across the worker threads that share it.

``likes backfill`` runs its dataflow with several Bytewax workers in one process (their
waits on Postgres and Redis overlap), and each worker's sink partition adds to its
sink's tally; ``+=`` on a shared attribute can lose an update between threads, a
:class:`Tally` cannot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class Tally:
    """A count of writes and the posts left unjudged, safe to add to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written = 0
        self._unsettled: set[int] = set()

    def add(self, n: int) -> None:
        """Count ``n`` more writes."""
        with self._lock:
            self._written += n

    def unsettle(self, posts: Iterable[int]) -> None:
        """Report ``posts`` as left unjudged (by one worker; the others add theirs)."""
        with self._lock:
            self._unsettled.update(posts)

    @property
    def written(self) -> int:
        with self._lock:
            return self._written

    @property
    def unsettled(self) -> list[int]:
        with self._lock:
            return sorted(self._unsettled)
