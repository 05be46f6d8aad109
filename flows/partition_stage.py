"""The per-Kafka-partition stage: dedupe by edge version, then tumbling windows.

Keyed by Kafka partition, so each edge (whose events share one partition) has one
owner and event-time progress never mixes partitions. Emits one ``StageOutput`` per
batch: every new transition, and window rows (on close, and every ``emit_ms`` of wall
time for windows still open, so idle input still drains). Counts events, dedupe drops
and late events into :mod:`flows.metrics` once per batch.

Both the counts and the analytics flow run it (each on its own copy of the input, with
its own state). With ``windows=False`` (the counts flow, which writes no windows) it
dedupes only: no window is counted, emitted or timed, and the snapshot keeps its shape
with an empty window part (a snapshot that held open windows drops them on resume).

With ``adopt=True`` (the counts flow) it also keeps what this partition's events have
contributed to each post's count and ``seq``, and turns a backfill's flow-state records
into :class:`~core.records.Adoption` items at their position (:mod:`flows.adoption`
states the guarantee): the post's count downstream becomes exact whatever the flow had
drifted to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytewax.operators import StatefulBatchLogic

from core.records import Accepted, Adoption, StageOutput, WindowPart
from core.settings import FlowSettings
from flows.adoption import Contributions
from flows.decode import FlowState, PartitionEvents
from flows.dedupe import EdgeDeduper
from flows.metrics import FLOW_DEDUPE_DROPPED, FLOW_EVENTS, FLOW_LATE_EVENTS, FLOW_STATE_EDGES
from flows.windows import PartitionWindows, part_name

Out = StageOutput
Snapshot = tuple[Any, ...]  # dedupe, windows, partition[, contributions, applied records]


class PartitionStage(StatefulBatchLogic[PartitionEvents, Out, Snapshot]):
    """Dedupe and window state of one Kafka partition."""

    def __init__(
        self,
        *,
        ttl_ms: int,
        window_ms: int,
        lateness_ms: int,
        emit_ms: int,
        snapshot: Snapshot | None = None,
        flow: str = "counts",
        windows: bool = True,
        adopt: bool = False,
        records: bool = True,
        starts: dict[int, int] | None = None,
        store_dir: Path | None = None,
    ) -> None:
        partition = snapshot[2] if snapshot else -1
        saved = (snapshot[3], snapshot[4]) if snapshot and len(snapshot) > 3 else None
        self.adoption = (
            Contributions(saved, fresh=snapshot is None, label=f"partition {partition}")
            if adopt
            else None
        )
        self.dedupe = EdgeDeduper(ttl_ms, snapshot[0] if snapshot else None, store_dir)
        self.windows = PartitionWindows(
            partition,
            window_ms,
            lateness_ms,
            snapshot[1] if snapshot and windows else None,
            starts,
        )
        if windows and not records:
            raise ValueError("windows need the accepted records")
        self.with_windows = windows
        self.records = records
        self.partition = partition
        self.emit_ms = emit_ms
        self.flow = flow
        self.duplicates = 0
        self._next_emit: float | None = None
        self._events = FLOW_EVENTS.labels(flow)
        self._dropped = FLOW_DEDUPE_DROPPED.labels(flow)

    def on_batch(self, values: list[PartitionEvents]) -> tuple[list[Out], bool]:
        accepted: list[Accepted] = []
        counted: list[tuple[int, int, int, int]] = []
        records = self.records
        rows: list[WindowPart] = []
        events, dropped, late_before = 0, 0, self.windows.late_events
        adopted: list[Adoption] = []
        adoption = self.adoption
        for group in values:
            if group.partition != self.partition:
                self.partition = group.partition
                self.windows.part = part_name(group.partition, self.windows.starts)
            self.dedupe.attach(group.partition)
            for ev in group.events:
                if isinstance(ev, FlowState):
                    if adoption is not None:
                        adopted.extend(adoption.adopt(ev, self.dedupe.max_ms))
                    continue
                events += 1
                ms = ev.occurred_ms
                applied = self.dedupe.apply(ev, ms)
                if applied is None:
                    dropped += 1
                    continue
                delta, inc = applied
                if adoption is not None:
                    adoption.add(ev.post_id, delta, inc)
                if not records:
                    counted.append((ev.post_id, delta, inc, ms))
                    continue
                eid = ev.event_id
                accepted.append(
                    Accepted(
                        ev.post_id,
                        ev.user_id,
                        ev.edge_version,
                        delta,
                        inc,
                        ms,
                        eid,
                        ev.action,
                        ev.author_id,
                    )
                )
                late = self.windows.add(ev.post_id, delta, ms, eid) if self.with_windows else None
                if late is not None:
                    rows.append(late)
        rows.extend(self.windows.close_due())
        if self.dedupe.maybe_evict() and adoption is not None:
            adoption.forget_records(self.dedupe.max_ms - self.dedupe.ttl_ms)
        self._count(events, dropped, self.windows.late_events - late_before)
        if self.windows.dirty and self._next_emit is None:
            self._next_emit = time.time() + self.emit_ms / 1000
        return [StageOutput(accepted, rows, adopted, counted)], StatefulBatchLogic.RETAIN

    def _count(self, events: int, dropped: int, late: int) -> None:
        self.duplicates += dropped
        if events:
            self._events.inc(events)
        if dropped:
            self._dropped.inc(dropped)
        if late:
            FLOW_LATE_EVENTS.inc(late)

    def notify_at(self) -> datetime | None:
        if self._next_emit is None:
            return None
        return datetime.fromtimestamp(self._next_emit, tz=UTC)

    def _flush(self) -> list[Out]:
        rows = self.windows.flush_dirty()
        return [StageOutput([], rows)] if rows else []

    def on_notify(self) -> tuple[list[Out], bool]:
        self._next_emit = None
        return self._flush(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Out], bool]:
        return self._flush(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> Snapshot:
        if self.dedupe.loaded:
            FLOW_STATE_EDGES.labels(self.flow, str(self.partition)).set(len(self.dedupe.edges))
        contributions, applied = self.adoption.snapshot() if self.adoption else (None, {})
        return (
            self.dedupe.snapshot(),
            self.windows.snapshot(),
            self.partition,
            contributions,
            applied,
        )


def stage_builder(
    s: FlowSettings,
    *,
    flow: str,
    windows: bool = True,
    adopt: bool = False,
    records: bool = True,
) -> Callable[[Snapshot | None], PartitionStage]:
    """The ``stateful_batch`` builder of flow ``flow``'s stage (resumed from a snapshot);
    ``adopt``: apply backfills' flow-state records (the counts flow); ``records=False``
    (no windows either): accepted transitions only as ``StageOutput.counted`` tuples."""

    def build(resume: Snapshot | None) -> PartitionStage:
        return PartitionStage(
            ttl_ms=s.dedupe_ttl_s * 1000,
            window_ms=s.window_s * 1000,
            lateness_ms=s.lateness_s * 1000,
            emit_ms=int(s.window_emit_s * 1000),
            snapshot=resume,
            flow=flow,
            windows=windows,
            adopt=adopt,
            records=records,
            starts=s.start_offsets.get(s.events_topic),
            store_dir=s.edge_store_path(flow),
        )

    return build
