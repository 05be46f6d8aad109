"""Sinks whose items are routed to a partition before they are written: to the one
process that may open the store (:class:`OwnerOnlySink`, embedded chDB: one process
per data path), or to a partition of the process that produced them
(:class:`ProcessLocalSink`), each optionally written in batches gathered over an
interval.

Guarantee: every item reaches the inner sink in the one process that owns the store,
whichever worker produced it (items of other processes cross to it through Bytewax's
exchange); the inner sink's promise under replay (idempotent batches) is unchanged.
With one process this is the inner sink. Only the owner lists the sink's one partition,
so Bytewax makes one of the owner's workers its primary.

With ``flush_s`` the owner's partition gathers items and writes them at most
``flush_s`` after they arrive, and always before the end of the epoch that brought
them (Bytewax snapshots a sink partition at the end of every epoch it wrote in, and the
snapshot writes what is gathered), so recovery never resumes past an item that was not
written: at least once, as without it. A write that fails surfaces at the next batch or
snapshot and stops the flow, which resumes from its last snapshot. For stores where
each insert has a fixed cost (a ClickHouse insert creates a part) a trickle then costs
one insert per ``flush_s`` instead of one per tiny batch. After each flush (an empty one
too) ``on_flushed`` is told the time it closed: everything handed to the partition before
it is in the store (``likes reconcile`` waits for it before calling a value stuck).

:class:`ProcessLocalSink` gives each process a partition of its own and keys every item
for the partition of the process it is in, so nothing crosses processes and each
process writes its own items in gathered batches (for stores any process may write,
such as Postgres): one transaction per ``flush_s`` instead of one per tiny batch. Items
of one key upstream (one post) stay in one process and in order, as without it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

OWNER_KEY = "owner"  # the key every item of an OwnerOnlySink is routed by


class RoutedSink(FixedPartitionedSink[T, None]):
    """``inner`` behind partitions of this sink's choosing; every item must be keyed
    with ``route_key`` first (``flows.streams.output`` does it)."""

    route_key: str

    on_flushed: Callable[[str, float], None] | None = None
    """Told ``(step_id, t)`` after each gathered flush: every item handed to the partition
    before ``t`` is written (an empty flush too; a failed one tells nothing)."""

    def __init__(self, inner: DynamicSink[T], *, flush_s: float = 0.0) -> None:
        self.inner = inner
        self.flush_s = flush_s

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[T, None]:
        inner = self.inner.build(step_id, 0, 1)
        if self.flush_s > 0:
            return _GatheringPart(inner, step_id, self.flush_s, self.on_flushed)
        return _OwnerPart(inner)


class OwnerOnlySink(RoutedSink[T]):
    """``inner``, written only in the process where ``owns`` is true."""

    route_key = OWNER_KEY

    def __init__(self, inner: DynamicSink[T], *, owns: bool, flush_s: float = 0.0) -> None:
        super().__init__(inner, flush_s=flush_s)
        self.owns = owns

    def list_parts(self) -> list[str]:
        return [OWNER_KEY] if self.owns else []

    def part_fn(self, item_key: str) -> int:
        return 0


class ProcessLocalSink(RoutedSink[T]):
    """``inner``, written by each process for its own items (process ``process_id`` of
    a cluster whose processes are numbered from 0)."""

    def __init__(self, inner: DynamicSink[T], *, process_id: int, flush_s: float = 0.0) -> None:
        super().__init__(inner, flush_s=flush_s)
        self.process_id = process_id
        self.route_key = str(process_id)

    def list_parts(self) -> list[str]:
        # Bytewax indexes ``part_fn`` into the sorted names of every process's parts
        return [f"p{self.process_id:05d}"]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)


class _OwnerPart(StatefulSinkPartition[T, None], Generic[T]):
    def __init__(self, inner: StatelessSinkPartition[T]) -> None:
        self._inner = inner

    def write_batch(self, values: list[T]) -> None:
        self._inner.write_batch(values)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._inner.close()


class _GatheringPart(StatefulSinkPartition[T, None], Generic[T]):
    """Writes what it gathered every ``flush_s`` (a thread of its own), at every
    snapshot and at close. The inner partition is called by one thread at a time, in
    the order the items came. The flow's thread does not wait for a write in progress
    (gathering takes a lock no write holds) unless that write has run for ``hold_s``:
    then it waits at its next batch, so a slow or hung store still holds the flow back
    (and a hung one stops its watchdog's beats) instead of the gathered items growing
    without bound; it always waits at a snapshot and at close."""

    def __init__(
        self,
        inner: StatelessSinkPartition[T],
        step_id: str,
        flush_s: float,
        on_flushed: Callable[[str, float], None] | None = None,
    ) -> None:
        self._inner = inner
        self._flush_s = flush_s
        self._step_id = step_id
        self._on_flushed = on_flushed
        self._hold_s = max(1.0, 2 * flush_s)
        self._gathered: list[T] = []
        self._lock = threading.Lock()  # guards _gathered only
        self._writing = threading.Lock()  # one inner write at a time, in order
        self._write_began: float | None = None  # monotonic start of the write in progress
        self._failed: BaseException | None = None
        self._closing = threading.Event()
        self._timer = threading.Thread(target=self._every, name=f"flush-{step_id}", daemon=True)
        self._timer.start()

    def write_batch(self, values: list[T]) -> None:
        self._raise_failure()
        with self._lock:
            self._gathered.extend(values)
        began = self._write_began
        if began is not None and time.monotonic() - began > self._hold_s:
            with self._writing:  # a slow write: wait for it (backpressure)
                pass

    def snapshot(self) -> None:
        self._raise_failure()
        self._flush()
        return None

    def close(self) -> None:
        self._closing.set()
        self._timer.join()
        try:
            self._flush()
        finally:
            self._inner.close()

    def _every(self) -> None:
        while not self._closing.wait(self._flush_s):
            if self._failed is not None:
                continue  # the flow thread raises it; the items stay gathered
            try:
                self._flush()
            except BaseException as e:  # raised in the flow's thread at its next call
                log.error("gathered write failed; the flow stops at its next batch: %s", e)
                self._failed = e

    def _flush(self) -> None:
        with self._writing:
            with self._lock:
                closed = time.time()
                items, self._gathered = self._gathered, []
            if items:
                self._write_began = time.monotonic()
                try:
                    self._inner.write_batch(items)
                except BaseException:
                    with self._lock:
                        self._gathered = items + self._gathered
                    raise
                finally:
                    self._write_began = None
        if self._on_flushed is not None:
            self._on_flushed(self._step_id, closed)

    def _raise_failure(self) -> None:
        failed = self._failed
        if failed is not None:
            raise failed
