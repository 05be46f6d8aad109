"""The per-post-shard stage: exact like counts and hot-post detection.

Keyed by ``post_id % shards``. Input items are per-batch partial sums (a combiner ran
before the exchange), so a viral post costs one item per upstream batch, not one per
like. Emits :class:`CountUpdate` items with absolute values and a monotone ``seq``, at
most one per post per batch, and :class:`HotChange` items (the flow splits them by type).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from core.records import CountUpdate, HotChange
from flows.hot import HotDetector

# post_id -> (delta, seq_inc, max_occurred_ms, {bucket_ms: likes})
Partial = dict[int, tuple[int, int, int, dict[int, int]]]
Out = CountUpdate | HotChange
Snapshot = tuple[dict[int, tuple[int, int]], int, Any]


class CountStage(StatefulBatchLogic[Partial, Out, Snapshot]):
    """Counts ``{post: (count, seq)}`` of one shard, and its hot detector."""

    def __init__(
        self, hot: HotDetector, *, check_ms: int, snapshot: Snapshot | None = None
    ) -> None:
        self.counts: dict[int, tuple[int, int]] = dict(snapshot[0]) if snapshot else {}
        self.max_ms: int = snapshot[1] if snapshot else 0
        self.hot = hot
        self.check_ms = check_ms
        self._anchor = time.monotonic()  # wall time of the last event; not snapshotted
        self._next_check: datetime | None = None

    def _now_ms(self) -> int:
        """Newest event time, advanced by wall time since it arrived."""
        return self.max_ms + int((time.monotonic() - self._anchor) * 1000)

    def on_batch(self, values: list[Partial]) -> tuple[list[Out], bool]:
        touched: dict[int, int] = {}  # post -> its newest event time in this batch
        for partial in values:
            for post_id, (delta, inc, ts, buckets) in partial.items():
                count, seq = self.counts.get(post_id, (0, 0))
                self.counts[post_id] = (count + delta, seq + inc)
                touched[post_id] = max(ts, touched.get(post_id, 0))
                for bucket, likes in buckets.items():
                    self.hot.add(post_id, bucket, likes)
                if ts > self.max_ms:
                    self.max_ms = ts
        self._anchor = time.monotonic()
        out: list[Out] = [CountUpdate(p, *self.counts[p]) for p in sorted(touched)]
        for post_id, ts in touched.items():  # each post at its own newest event first
            out.extend(self.hot.evaluate([post_id], ts))
        out.extend(self.hot.evaluate(list(self.hot.hot), self.max_ms))
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self._next_check is None and (self.hot.hot or self.hot.buckets):
            self._next_check = datetime.fromtimestamp(time.time() + self.check_ms / 1000, tz=UTC)
        return self._next_check

    def on_notify(self) -> tuple[list[Out], bool]:
        self._next_check = None
        now = self._now_ms()
        changes = self.hot.evaluate(list(self.hot.hot), now)
        self.hot.sweep(now)
        return list(changes), StatefulBatchLogic.RETAIN

    def snapshot(self) -> Snapshot:
        return dict(self.counts), self.max_ms, self.hot.snapshot()
