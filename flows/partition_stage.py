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
contributed to each post's count and ``seq``, and applies a backfill's flow-state
records (:class:`~flows.decode.FlowState`): at the record's position it emits the
difference between the edge store's truth for the post's edges in this partition and
that contribution (an :class:`~core.records.Adoption`), then holds the truth. Because
the record sits after every event it includes and before every event it does not, the
post's count downstream becomes exact whatever the flow had drifted to (a duplicate
after the dedupe TTL, a lost recovery store). A redelivered record changes nothing:
applied records are remembered by id, as long as edges are (the dedupe TTL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from core.records import Accepted, Adoption, StageOutput, WindowPart
from core.settings import FlowSettings
from flows.decode import FlowState, PartitionEvents
from flows.dedupe import EdgeDeduper
from flows.metrics import FLOW_DEDUPE_DROPPED, FLOW_EVENTS, FLOW_LATE_EVENTS, FLOW_STATE_EDGES
from flows.windows import PartitionWindows, part_name

log = logging.getLogger(__name__)
Out = StageOutput
Snapshot = tuple[Any, ...]  # dedupe, windows, partition[, contributions, applied records]
# a post's contribution packed in one int: seq << 32 | (count + _OFFSET)
_OFFSET = 1 << 31
_LOW = (1 << 32) - 1


def _pack(count: int, seq: int) -> int:
    return (seq << 32) + count + _OFFSET


def _unpack(packed: int) -> tuple[int, int]:
    return (packed & _LOW) - _OFFSET, packed >> 32


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
        starts: dict[int, int] | None = None,
    ) -> None:
        partition = snapshot[2] if snapshot else -1
        # post -> packed (count, seq) from this partition's events since the flow's state
        # began; None: not kept (no adoption, or state older than adoption: unknown)
        self.contrib: dict[int, int] | None = None
        self.applied_records: dict[int, int] = {}  # record id -> event time applied
        if snapshot is None or len(snapshot) > 3:
            had = snapshot[3] if snapshot else {}
            self.contrib = dict(had) if adopt and had is not None else None
            self.applied_records = dict(snapshot[4]) if snapshot else {}
        if adopt and self.contrib is None:
            log.warning(
                "partition %s: flow state predates flow-state records; they are ignored "
                "until the flow starts from fresh state (README: lost recovery store)",
                partition,
            )
        self.dedupe = EdgeDeduper(ttl_ms, snapshot[0] if snapshot else None)
        self.windows = PartitionWindows(
            partition,
            window_ms,
            lateness_ms,
            snapshot[1] if snapshot and windows else None,
            starts,
        )
        self.with_windows = windows
        self.partition = partition
        self.emit_ms = emit_ms
        self.flow = flow
        self.duplicates = 0
        self._next_emit: float | None = None
        self._events = FLOW_EVENTS.labels(flow)
        self._dropped = FLOW_DEDUPE_DROPPED.labels(flow)

    def on_batch(self, values: list[PartitionEvents]) -> tuple[list[Out], bool]:
        accepted: list[Accepted] = []
        rows: list[WindowPart] = []
        events, dropped, late_before = 0, 0, self.windows.late_events
        adopted: list[Adoption] = []
        contrib = self.contrib
        for group in values:
            if group.partition != self.partition:
                self.partition = group.partition
                self.windows.part = part_name(group.partition, self.windows.starts)
            for ev in group.events:
                if isinstance(ev, FlowState):
                    adopted.extend(self._adopt(ev))
                    continue
                events += 1
                ms = ev.occurred_ms
                applied = self.dedupe.apply(ev, ms)
                if applied is None:
                    dropped += 1
                    continue
                delta, inc = applied
                if contrib is not None:
                    contrib[ev.post_id] = contrib.get(ev.post_id, _OFFSET) + (inc << 32) + delta
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
        if self.dedupe.maybe_evict():
            self._forget_records()
        self._count(events, dropped, self.windows.late_events - late_before)
        if self.windows.dirty and self._next_emit is None:
            self._next_emit = time.time() + self.emit_ms / 1000
        return [StageOutput(accepted, rows, adopted)], StatefulBatchLogic.RETAIN

    def _adopt(self, record: FlowState) -> list[Adoption]:
        """The corrections a flow-state record makes here (none when redelivered)."""
        contrib = self.contrib
        if contrib is None or record.record_id in self.applied_records:
            return []
        self.applied_records[record.record_id] = self.dedupe.max_ms
        out = []
        for post_id, count, seq in record.posts:
            have_count, have_seq = _unpack(contrib.get(post_id, _OFFSET))
            if (have_count, have_seq) != (count, seq):
                out.append(Adoption(post_id, count - have_count, seq - have_seq))
                contrib[post_id] = _pack(count, seq)
        return out

    def _forget_records(self) -> None:
        cutoff = self.dedupe.max_ms - self.dedupe.ttl_ms
        for rid in [r for r, ms in self.applied_records.items() if ms < cutoff]:
            del self.applied_records[rid]

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
        FLOW_STATE_EDGES.labels(self.flow, str(self.partition)).set(len(self.dedupe.edges))
        return (
            self.dedupe.snapshot(),
            self.windows.snapshot(),
            self.partition,
            dict(self.contrib) if self.contrib is not None else None,
            dict(self.applied_records),
        )


def stage_builder(
    s: FlowSettings, *, flow: str, windows: bool = True, adopt: bool = False
) -> Callable[[Snapshot | None], PartitionStage]:
    """The ``stateful_batch`` builder of flow ``flow``'s stage (resumed from a snapshot);
    ``adopt``: apply backfills' flow-state records (the counts flow)."""

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
            starts=s.start_offsets.get(s.events_topic),
        )

    return build
