"""Stateful stages of the fanout flow: dedupe per Kafka partition; trending and the
notification rate limit per post shard (recent likers: :mod:`flows.recent`).

The dedupe stage counts events and drops into :mod:`flows.metrics` once per batch, and
turns a backfill's flow-state records into :class:`~core.records.Adoption` items for the
recent-likers stage (:mod:`flows.adoption` states the guarantee).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bytewax.operators import StatefulBatchLogic

from core.records import Accepted, Adoption, LikerChange, NotificationUpdate, TrendOut
from flows.adoption import Contributions
from flows.decode import FlowState, PartitionEvents
from flows.dedupe import EdgeDeduper
from flows.metrics import FLOW_DEDUPE_DROPPED, FLOW_EVENTS, FLOW_STATE_EDGES
from flows.trending import TrendingScores
from schemas.events import LikeEvent

SWEEP_EVERY_MS = 10 * 60 * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Deduped:
    """What the dedupe stage emits per batch: the new transitions, and the same
    transitions as the recent-likers stage needs them (exact event time) with the
    adoptions of flow-state records in their place among them."""

    accepted: list[Accepted]
    changes: list[LikerChange | Adoption]


def _accepted(ev: LikeEvent, delta: int, seq_inc: int) -> Accepted:
    return Accepted(
        ev.post_id,
        ev.user_id,
        ev.edge_version,
        delta,
        seq_inc,
        ev.occurred_ms,
        ev.event_id,
        ev.action,
        ev.author_id,
    )


def _liker_change(ev: LikeEvent, seq_inc: int) -> LikerChange:
    us = (ev.occurred_at - _EPOCH) // _MICROSECOND  # exact: no float on the way
    return LikerChange(ev.post_id, ev.user_id, ev.edge_version, ev.liked, us, seq_inc)


class DedupeStage(StatefulBatchLogic[PartitionEvents, Deduped, Any]):
    """Edge-version dedupe of one Kafka partition; emits each new transition once (one
    :class:`Deduped` per batch), and each flow-state record's adoptions once."""

    def __init__(
        self,
        ttl_ms: int,
        snapshot: Any = None,
        flow: str = "fanout",
        store_dir: Path | None = None,
    ) -> None:
        # (dedupe, contributions, applied records); saved before adoption: the dedupe's
        deduped, saved = snapshot, None
        if snapshot is not None and not isinstance(snapshot[0], dict):
            deduped, saved = snapshot[0], snapshot[1:]
        self.dedupe = EdgeDeduper(ttl_ms, deduped, store_dir)
        self.adoption = Contributions(saved, fresh=snapshot is None, label=f"{flow} dedupe")
        self.flow = flow
        self.partition = -1  # known from the first batch
        self._events = FLOW_EVENTS.labels(flow)
        self._dropped = FLOW_DEDUPE_DROPPED.labels(flow)

    def on_batch(self, values: list[PartitionEvents]) -> tuple[list[Deduped], bool]:
        out: list[Accepted] = []
        changes: list[LikerChange | Adoption] = []
        events = 0
        adoption = self.adoption
        for group in values:
            self.partition = group.partition
            self.dedupe.attach(group.partition)
            for ev in group.events:
                if isinstance(ev, FlowState):
                    changes.extend(adoption.adopt(ev, self.dedupe.max_ms))
                    continue
                events += 1
                applied = self.dedupe.apply(ev)
                if applied is not None:
                    out.append(_accepted(ev, *applied))
                    changes.append(_liker_change(ev, applied[1]))
                    adoption.add(ev.post_id, *applied)
        if self.dedupe.maybe_evict():
            adoption.forget_records(self.dedupe.max_ms - self.dedupe.ttl_ms)
        if events:
            self._events.inc(events)
            if events > len(out):
                self._dropped.inc(events - len(out))
        return [Deduped(out, changes)], StatefulBatchLogic.RETAIN

    def snapshot(self) -> Any:
        if self.dedupe.loaded:
            FLOW_STATE_EDGES.labels(self.flow, str(self.partition)).set(len(self.dedupe.edges))
        return (self.dedupe.snapshot(), *self.adoption.snapshot())


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


Pair = tuple[int, int]
"""``(recipient_id, post_id)``: one notification aggregate."""
ThrottleSnapshot = tuple[dict[Pair, float], list[Pair]]


class NotifyThrottle(StatefulBatchLogic[list[Accepted], NotificationUpdate, ThrottleSnapshot]):
    """The notification rate limit of one post shard.

    Every batch's notifying likes go out at once, one :class:`NotificationUpdate` per
    (recipient, post), so the sink's actor ledger records every actor without delay.
    Only the fold into the aggregate (the visible update) is limited: it is asked for at
    most once per ``interval_s`` of wall time per (recipient, post), on the first like
    after a quiet interval, and otherwise by a timer when the interval since the last
    fold ends (so the aggregate is exact at most ``interval_s`` after a storm ends) or at
    the end of the input.

    Replay-safe whatever the timing: the ledger's primary key drops actors seen before,
    and a fold adds only ledger actors not yet in the aggregate, in one transaction, so a
    repeated or extra fold changes nothing. Wall time decides only when folds happen.
    """

    def __init__(
        self,
        interval_s: float,
        snapshot: ThrottleSnapshot | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.folded: dict[Pair, float] = dict(snapshot[0]) if snapshot else {}
        self.dirty: set[Pair] = set(snapshot[1]) if snapshot else set()
        self._swept = 0.0

    def on_batch(self, values: list[list[Accepted]]) -> tuple[list[NotificationUpdate], bool]:
        now = self.clock()
        actors: dict[Pair, dict[int, int]] = {}
        for group in values:
            for a in group:
                if a.author_id is None:
                    continue
                first = actors.setdefault((a.author_id, a.post_id), {})
                first[a.user_id] = min(a.occurred_ms, first.get(a.user_id, a.occurred_ms))
        out: list[NotificationUpdate] = []
        for pair in sorted(actors):
            fold = self._fold_now(pair, now)
            out.append(NotificationUpdate(*pair, tuple(sorted(actors[pair].items())), fold))
        out.extend(self._due(now))
        self._forget(now)
        return out, StatefulBatchLogic.RETAIN

    def _fold_now(self, pair: Pair, now: float) -> bool:
        last = self.folded.get(pair)
        if last is None or now - last >= self.interval_s:
            self.folded[pair] = now
            self.dirty.discard(pair)
            return True
        self.dirty.add(pair)
        return False

    def _due(self, now: float, everything: bool = False) -> list[NotificationUpdate]:
        due = sorted(p for p in self.dirty if everything or now - self.folded[p] >= self.interval_s)
        for pair in due:
            self.folded[pair] = now
            self.dirty.discard(pair)
        return [NotificationUpdate(r, p, (), True) for r, p in due]

    def _forget(self, now: float) -> None:
        """Drop quiet pairs (their next like folds at once anyway), once per interval."""
        if now - self._swept < self.interval_s:
            return
        self._swept = now
        quiet = [
            p for p, t in self.folded.items() if now - t >= self.interval_s and p not in self.dirty
        ]
        for p in quiet:
            del self.folded[p]

    def notify_at(self) -> datetime | None:
        if not self.dirty:
            return None
        first = min(self.folded[p] for p in self.dirty) + self.interval_s
        return datetime.fromtimestamp(first, tz=UTC)

    def on_notify(self) -> tuple[list[NotificationUpdate], bool]:
        now = self.clock()
        out = self._due(now)
        self._forget(now)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[NotificationUpdate], bool]:
        return self._due(self.clock(), everything=True), StatefulBatchLogic.RETAIN

    def snapshot(self) -> ThrottleSnapshot:
        return dict(self.folded), sorted(self.dirty)
