"""The per-post-shard stage: exact like counts and hot-post detection.

Keyed by ``post_id % shards``. Input items are per-batch partial sums (a combiner ran
before the exchange), so a viral post costs one item per upstream batch, not one per
like. Emits :class:`CountUpdate` items with absolute values and a monotone ``seq`` (but
after a backfill's adoption, which may lower it, and says so: ``forced``), at most one
per post per batch, each carrying the newest event time behind it (for
freshness), and :class:`HotChange` items (the flow splits them by type). It also keeps
its shard's hot-post figures (:data:`flows.metrics.HOT_FIGURES`) up to date at its hot
checks (every ``check_ms`` while it has likes in the window, and at most once a
second), right after the detector dropped expired buckets: one pass over the shard's
recently liked posts, as cheap as the sweep before it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from core.records import CountUpdate, HotChange
from flows.hot import HotDetector
from flows.metrics import HOT_FIGURES, HotFigures

# post_id -> [delta, seq_inc, max_occurred_ms, {bucket_ms: likes}, adopted a backfill]
# (a list: the combiner updates it in place, once per event)
Partial = dict[int, list[Any]]
Out = CountUpdate | HotChange
Snapshot = tuple[dict[int, tuple[int, int]], int, Any]
FIGURES_EVERY_S = 1.0


class CountStage(StatefulBatchLogic[Partial, Out, Snapshot]):
    """Counts ``{post: (count, seq)}`` of one shard, and its hot detector."""

    def __init__(
        self,
        hot: HotDetector,
        *,
        check_ms: int,
        snapshot: Snapshot | None = None,
        figures: HotFigures = HOT_FIGURES,
    ) -> None:
        self.counts: dict[int, tuple[int, int]] = dict(snapshot[0]) if snapshot else {}
        self.max_ms: int = snapshot[1] if snapshot else 0
        self.hot = hot
        self.check_ms = check_ms
        self._anchor = time.monotonic()  # wall time of the last event; not snapshotted
        self._next_check: datetime | None = None
        self._figures = figures
        self._figures_key = figures.register(self)
        self._next_figures = 0.0  # monotonic time after which a hot check publishes them
        self._publish_figures()

    def _now_ms(self) -> int:
        """Newest event time, advanced by wall time since it arrived."""
        return self.max_ms + int((time.monotonic() - self._anchor) * 1000)

    def on_batch(self, values: list[Partial]) -> tuple[list[Out], bool]:
        touched: dict[int, int] = {}  # post -> its newest event time in this batch
        forced: set[int] = set()
        for partial in values:
            for post_id, (delta, inc, ts, buckets, adopted) in partial.items():
                count, seq = self.counts.get(post_id, (0, 0))
                self.counts[post_id] = (count + delta, seq + inc)
                touched[post_id] = max(ts, touched.get(post_id, 0))
                if adopted:
                    forced.add(post_id)
                for bucket, likes in buckets.items():
                    self.hot.add(post_id, bucket, likes)
                if ts > self.max_ms:
                    self.max_ms = ts
        self._anchor = time.monotonic()
        out: list[Out] = [
            CountUpdate(p, *self.counts[p], newest_ms=touched[p], forced=p in forced)
            for p in sorted(touched)
        ]
        for post_id, ts in touched.items():  # each post at its own newest event first
            out.extend(self.hot.evaluate([post_id], ts))
        out.extend(self.hot.evaluate(list(self.hot.hot), self.max_ms))
        return out, StatefulBatchLogic.RETAIN

    def _publish_figures(self) -> None:
        """Hot posts, likes in the detector's buckets and those of the busiest post (exact
        for the trailing window right after a sweep, which drops expired buckets)."""
        per_post = [sum(b.values()) for b in self.hot.buckets.values()]
        top = max(per_post, default=0)
        self._figures.set(self._figures_key, len(self.hot.hot), sum(per_post), top)

    def notify_at(self) -> datetime | None:
        if self._next_check is None and (self.hot.hot or self.hot.buckets):
            self._next_check = datetime.fromtimestamp(time.time() + self.check_ms / 1000, tz=UTC)
        return self._next_check

    def on_notify(self) -> tuple[list[Out], bool]:
        self._next_check = None
        now = self._now_ms()
        changes = self.hot.evaluate(list(self.hot.hot), now)
        self.hot.sweep(now)
        if not self.hot.buckets or time.monotonic() >= self._next_figures:
            self._publish_figures()
            self._next_figures = time.monotonic() + FIGURES_EVERY_S
        return list(changes), StatefulBatchLogic.RETAIN

    def snapshot(self) -> Snapshot:
        return dict(self.counts), self.max_ms, self.hot.snapshot()
