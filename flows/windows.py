"""Per-post tumbling event-time windows, kept per Kafka partition.

Guarantee: every accepted transition is counted in exactly one window row. Windows close
on event time only (the partition's newest event time minus the allowed lateness), so a
replay closes the same windows with the same values. A transition for an already closed
window becomes a correction row of its own (part ``late:<event_id>``): late events are
counted, never dropped. Rows are absolute values with a growing version, so re-emitting
them (provisionally while a window is open, or again after a replay) never adds. A flow
started from fresh state at recorded offsets (``likes flows-reset``) writes parts named
after its start offset (``p<partition>@<offset>``), beside the parts the lost state wrote,
so neither overwrites the other and the sum stays exact after the backfill corrects the gap.
"""

from __future__ import annotations

from core.records import WindowPart


def part_name(partition: int, starts: dict[int, int] | None = None) -> str:
    """The part on-time rows of ``partition`` are written as; ``starts``: the offsets a
    reset flow started from (its generation), none for a flow that began at retention."""
    start = (starts or {}).get(partition)
    return f"p{partition}" if start is None else f"p{partition}@{start}"


class PartitionWindows:
    """Open windows of one Kafka partition: ``{window_start: {post: [likes, unlikes]}}``."""

    def __init__(
        self,
        partition: int,
        window_ms: int,
        lateness_ms: int,
        snapshot: tuple[dict[int, dict[int, list[int]]], int] | None = None,
        starts: dict[int, int] | None = None,
    ) -> None:
        self.starts = starts or {}
        self.part = part_name(partition, self.starts)
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.open: dict[int, dict[int, list[int]]] = (
            {w: {p: list(c) for p, c in posts.items()} for w, posts in snapshot[0].items()}
            if snapshot
            else {}
        )
        self.max_ms: int = snapshot[1] if snapshot else 0
        # After a restore nothing is known to be emitted: re-emit every open row once.
        self.dirty: set[tuple[int, int]] = {(w, p) for w, posts in self.open.items() for p in posts}
        self.late_events = 0

    @property
    def watermark(self) -> int:
        """Windows ending at or before this event time are closed."""
        return self.max_ms - self.lateness_ms

    def add(
        self, post_id: int, delta: int, occurred_ms: int, event_id: object
    ) -> WindowPart | None:
        """Count one transition; return a correction row if its window already closed."""
        if delta == 0:
            return None
        start = occurred_ms - occurred_ms % self.window_ms
        likes, unlikes = (1, 0) if delta > 0 else (0, 1)
        if start + self.window_ms <= self.watermark and start not in self.open:
            self.late_events += 1
            return WindowPart(
                post_id, start, start + self.window_ms, f"late:{event_id}", likes, unlikes, 1
            )
        counts = self.open.setdefault(start, {}).setdefault(post_id, [0, 0])
        counts[0] += likes
        counts[1] += unlikes
        self.dirty.add((start, post_id))
        if occurred_ms > self.max_ms:
            self.max_ms = occurred_ms
        return None

    def _row(self, start: int, post_id: int, counts: list[int]) -> WindowPart:
        return WindowPart(
            post_id,
            start,
            start + self.window_ms,
            self.part,
            counts[0],
            counts[1],
            counts[0] + counts[1],
        )

    def close_due(self) -> list[WindowPart]:
        """Final rows (those not yet emitted with current values) of windows now closed."""
        out = []
        for start in sorted(w for w in self.open if w + self.window_ms <= self.watermark):
            for post_id, counts in self.open.pop(start).items():
                if (start, post_id) in self.dirty:
                    self.dirty.discard((start, post_id))
                    out.append(self._row(start, post_id, counts))
        return out

    def flush_dirty(self) -> list[WindowPart]:
        """Provisional rows for open windows that changed since they were last emitted."""
        out = [self._row(w, p, self.open[w][p]) for w, p in sorted(self.dirty)]
        self.dirty.clear()
        return out

    def snapshot(self) -> tuple[dict[int, dict[int, list[int]]], int]:
        """A deep enough copy that later counting cannot alias it."""
        return {
            w: {p: list(c) for p, c in posts.items()} for w, posts in self.open.items()
        }, self.max_ms
