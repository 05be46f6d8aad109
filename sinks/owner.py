"""A sink whose store only one process may open (embedded chDB: one process per data
path), in a dataflow run as a cluster of processes; optionally written in batches
gathered over an interval.

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
one insert per ``flush_s`` instead of one per tiny batch.
"""

from __future__ import annotations

import logging
import threading
from typing import Generic, TypeVar

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

OWNER_KEY = "owner"  # the key every item is routed by (see flows.streams.output)


class OwnerOnlySink(FixedPartitionedSink[T, None]):
    """``inner``, written only in the process where ``owns`` is true."""

    def __init__(self, inner: DynamicSink[T], *, owns: bool, flush_s: float = 0.0) -> None:
        self.inner = inner
        self.owns = owns
        self.flush_s = flush_s

    def list_parts(self) -> list[str]:
        return [OWNER_KEY] if self.owns else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[T, None]:
        inner = self.inner.build(step_id, 0, 1)
        if self.flush_s > 0:
            return _GatheringPart(inner, step_id, self.flush_s)
        return _OwnerPart(inner)


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
    snapshot and at close; the inner partition is only ever called under the lock."""

    def __init__(self, inner: StatelessSinkPartition[T], step_id: str, flush_s: float) -> None:
        self._inner = inner
        self._flush_s = flush_s
        self._gathered: list[T] = []
        self._lock = threading.Lock()
        self._failed: BaseException | None = None
        self._closing = threading.Event()
        self._timer = threading.Thread(target=self._every, name=f"flush-{step_id}", daemon=True)
        self._timer.start()

    def write_batch(self, values: list[T]) -> None:
        self._raise_failure()
        with self._lock:
            self._gathered.extend(values)

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
        with self._lock:
            items, self._gathered = self._gathered, []
            if not items:
                return
            try:
                self._inner.write_batch(items)
            except BaseException:
                self._gathered = items + self._gathered
                raise

    def _raise_failure(self) -> None:
        failed = self._failed
        if failed is not None:
            raise failed
