"""A sink whose store only one process may open (embedded chDB: one process per data
path), in a dataflow run as a cluster of processes.

Guarantee: every item reaches the inner sink in the one process that owns the store,
whichever worker produced it (items of other processes cross to it through Bytewax's
exchange); the inner sink's promise under replay (idempotent batches) is unchanged.
With one process this is the inner sink. Only the owner lists the sink's one partition,
so Bytewax makes one of the owner's workers its primary.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

T = TypeVar("T")

OWNER_KEY = "owner"  # the key every item is routed by (see flows.streams.output)


class OwnerOnlySink(FixedPartitionedSink[T, None]):
    """``inner``, written only in the process where ``owns`` is true."""

    def __init__(self, inner: DynamicSink[T], *, owns: bool) -> None:
        self.inner = inner
        self.owns = owns

    def list_parts(self) -> list[str]:
        return [OWNER_KEY] if self.owns else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[T, None]:
        return _OwnerPart(self.inner.build(step_id, 0, 1))


class _OwnerPart(StatefulSinkPartition[T, None], Generic[T]):
    def __init__(self, inner: StatelessSinkPartition[T]) -> None:
        self._inner = inner

    def write_batch(self, values: list[T]) -> None:
        self._inner.write_batch(values)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._inner.close()
