"""Stateful stages of the fanout flow: dedupe per Kafka partition, trending per post shard.

The dedupe stage counts events and drops into :mod:`flows.metrics` once per batch.
"""

from __future__ import annotations

from typing import Any

from bytewax.operators import StatefulBatchLogic

from core.records import Accepted, TrendOut
from flows.decode import PartitionEvents
from flows.dedupe import EdgeDeduper
from flows.metrics import FLOW_DEDUPE_DROPPED, FLOW_EVENTS
from flows.trending import TrendingScores

SWEEP_EVERY_MS = 10 * 60 * 1000


class DedupeStage(StatefulBatchLogic[PartitionEvents, list[Accepted], Any]):
    """Edge-version dedupe of one Kafka partition; emits each new transition once (one
    list per batch)."""

    def __init__(self, ttl_ms: int, snapshot: Any = None, flow: str = "fanout") -> None:
        self.dedupe = EdgeDeduper(ttl_ms, snapshot)
        self._events = FLOW_EVENTS.labels(flow)
        self._dropped = FLOW_DEDUPE_DROPPED.labels(flow)

    def on_batch(self, values: list[PartitionEvents]) -> tuple[list[list[Accepted]], bool]:
        out: list[Accepted] = []
        events = 0
        for group in values:
            events += len(group.events)
            for ev in group.events:
                applied = self.dedupe.apply(ev)
                if applied is not None:
                    out.append(
                        Accepted(
                            ev.post_id,
                            ev.user_id,
                            ev.edge_version,
                            applied[0],
                            applied[1],
                            ev.occurred_ms,
                            ev.event_id,
                            ev.action,
                            ev.author_id,
                        )
                    )
        self.dedupe.maybe_evict()
        if events:
            self._events.inc(events)
            if events > len(out):
                self._dropped.inc(events - len(out))
        return [out], StatefulBatchLogic.RETAIN

    def snapshot(self) -> Any:
        return self.dedupe.snapshot()


class TrendStage(StatefulBatchLogic[dict[int, list[int]], TrendOut, Any]):
    """Decayed like scores of one post shard; emits absolute scores per batch."""

    def __init__(self, half_life_s: float, snapshot: Any = None) -> None:
        self.trending = TrendingScores(half_life_s, snapshot[0] if snapshot else None)
        self.max_ms: int = snapshot[1] if snapshot else 0
        self._swept = self.max_ms

    def on_batch(self, values: list[dict[int, list[int]]]) -> tuple[list[TrendOut], bool]:
        touched: dict[int, float] = {}
        for partial in values:
            for post_id, times in partial.items():
                for ms in times:
                    touched[post_id] = self.trending.add(post_id, ms)
                    self.max_ms = max(self.max_ms, ms)
        out: list[TrendOut] = [(p, s) for p, s in sorted(touched.items())]
        if self.max_ms - self._swept > SWEEP_EVERY_MS:
            self._swept = self.max_ms
            out.extend((p, None) for p in self.trending.forget_cold(self.max_ms))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> Any:
        return self.trending.snapshot(), self.max_ms
