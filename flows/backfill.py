"""The backfill dataflow: rebuild the count projections from the edge store.

Guarantees, while live traffic continues:

* Each post's value is read in one statement, so its count and its ``seq``
  (``sum(version)`` of its edges) describe the same set of edge transitions: the value
  the counts flow writes for the post at that position.
* Writes are fenced by that position, like the live flow's: a projection holding a
  newer ``seq`` (the flow got further) is left alone, an older or missing one is
  replaced, and one at the same ``seq`` with another count (damage) is corrected. Live
  events are never double-counted and the flow's later writes, at higher ``seq``, apply
  on top as usual.
* Streamed in chunks of posts in ``post_id`` order, one short statement each (no long
  transaction, no lock held between chunks, memory bounded by the chunk), from
  ``post_id`` ranges read in parallel partitions; a partition's position is its last
  post, so a rerun resumes where it stopped if given recovery, and repeating it is
  harmless anyway.

It also rebuilds ``likes:recent:{post}`` (the newest current likers from the edge store,
written only over a list at a lower ``seq``), and hands each post to any other per-post
sink it is given (``ops.backfill``: ClickHouse corrections, notifications, trending),
which states its own guarantee. Given ``records``, each chunk is read by the statement
that also publishes its flow-state records (``flows.backfill_chunks``), so the live flows
adopt the edge store's truth at their own position; without, it leaves the flows' own
state alone (right after a loss of Redis data or a wiped table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import Sink

from core.records import CountUpdate, RecentLikers
from flows.backfill_chunks import ChunkQuery, ChunkReader, FlowStateRecords, PostSnapshot

__all__ = ["BackfillPlan", "EdgeStoreSource", "FlowStateRecords", "PostSnapshot", "build_flow"]


@dataclass(frozen=True)
class BackfillPlan:
    """Which posts to rebuild: ``post_id`` in ``(first - 1, last]`` cut into ranges."""

    first: int
    last: int
    partitions: int = 4
    chunk: int = 1000
    since: datetime | None = None

    def ranges(self) -> dict[str, tuple[int, int]]:
        """``{partition name: (after, last)}`` covering every post of the plan."""
        span = self.last - self.first + 1
        step = -(-span // self.partitions)
        out = {}
        for i in range(self.partitions):
            after = self.first - 1 + i * step
            if after >= self.last:
                break
            out[f"posts-{i}"] = (after, min(self.last, after + step))
        return out


class _RangePartition(StatefulSourcePartition[PostSnapshot, int]):
    def __init__(self, reader: ChunkReader, plan: BackfillPlan, after: int, last: int) -> None:
        self._reader, self._plan, self._after, self._last = reader, plan, after, last

    def next_batch(self) -> Iterable[PostSnapshot]:
        if self._after >= self._last:
            raise StopIteration
        q = ChunkQuery(self._after, self._last, self._plan.chunk, self._plan.since)
        posts = self._reader.read(q)
        if len(posts) < self._plan.chunk:
            self._after = self._last  # this range is done once the rows are written
        else:
            self._after = posts[-1].post_id
        return posts

    def snapshot(self) -> int:
        return self._after

    def close(self) -> None:
        self._reader.close()


class EdgeStoreSource(FixedPartitionedSource[PostSnapshot, int]):
    """Per-post snapshots of the edge store, one partition per ``post_id`` range (with
    ``records``: each chunk's flow-state records published as it is read)."""

    def __init__(
        self, url: str, plan: BackfillPlan, records: FlowStateRecords | None = None
    ) -> None:
        self._url, self._plan, self._records = url, plan, records

    def list_parts(self) -> list[str]:
        return list(self._plan.ranges())

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RangePartition:
        after, last = self._plan.ranges()[for_part]
        reader = ChunkReader(self._url, self._records)
        return _RangePartition(reader, self._plan, max(after, resume_state or after), last)


def build_flow(
    url: str,
    plan: BackfillPlan,
    sinks: list[Sink[CountUpdate]],
    on_posts: Callable[[PostSnapshot], None] | None = None,
    recent: Sequence[Sink[RecentLikers]] = (),
    records: FlowStateRecords | None = None,
) -> Dataflow:
    """The backfill dataflow; ``on_posts`` sees every post read (progress). ``recent``
    sinks get each post's recent likers as an inexact list at the post's ``seq``: the
    sink reads the list itself from the edge store (``sinks.redis_recent``), fenced by
    that ``seq`` like the counts."""
    flow = Dataflow("likes_backfill")
    posts = op.input("read_edge_store", flow, EdgeStoreSource(url, plan, records))
    if on_posts is not None:
        watched = on_posts
        posts = op.inspect("progress", posts, lambda _step, p: watched(p))
    counts = op.map("to_counts", posts, lambda p: CountUpdate(p.post_id, p.count, p.seq))
    for i, sink in enumerate(sinks):
        op.output(f"write_counts_{i}", counts, sink)
    if recent:
        lists = op.map("to_recent", posts, lambda p: RecentLikers(p.post_id, (), p.seq, False))
        for i, rsink in enumerate(recent):
            op.output(f"write_recent_{i}", lists, rsink)
    return flow
