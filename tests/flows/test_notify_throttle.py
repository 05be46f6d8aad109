"""The notification rate limit: every actor recorded at once, the aggregate folded at
most once per interval per (recipient, post), and exact when a storm ends."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource

from core.records import Accepted, NotificationUpdate
from core.settings import FlowSettings
from flows.fanout import FanoutSinks, build_flow
from flows.fanout_stages import NotifyThrottle
from tests.flows.conftest import Runner
from tests.flows.fanout_model import NotificationStore
from tests.flows.helpers import T0_MS, event, to_messages

AUTHOR = 999


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def like(post: int, user: int, ms: int = T0_MS) -> Accepted:
    return Accepted(post, user, 1, 1, 1, ms, uuid.uuid4(), "LikeCreated", AUTHOR)


def test_first_like_folds_then_the_rest_wait_for_the_interval() -> None:
    clock = Clock()
    t = NotifyThrottle(5.0, clock=clock)
    out, _ = t.on_batch([[like(1, 10), like(1, 11, T0_MS - 5), like(2, 10)]])
    assert out == [
        NotificationUpdate(AUTHOR, 1, ((10, T0_MS), (11, T0_MS - 5)), True),
        NotificationUpdate(AUTHOR, 2, ((10, T0_MS),), True),
    ]
    assert t.notify_at() is None
    clock.now += 1
    out, _ = t.on_batch([[like(1, 12)]])
    assert out == [NotificationUpdate(AUTHOR, 1, ((12, T0_MS),), False)], "recorded, not folded"
    assert t.notify_at() == datetime.fromtimestamp(1005.0, tz=UTC)
    clock.now += 2
    assert t.on_notify()[0] == [], "not due yet"
    clock.now = 1005.0
    assert t.on_notify()[0] == [NotificationUpdate(AUTHOR, 1, (), True)]
    assert t.notify_at() is None
    clock.now = 1010.0
    out, _ = t.on_batch([[like(1, 13)]])
    assert out[0].fold, "the first like after a quiet interval folds at once"


def test_end_of_input_folds_what_waits_and_snapshot_keeps_it() -> None:
    clock = Clock()
    t = NotifyThrottle(5.0, clock=clock)
    t.on_batch([[like(1, 10)]])
    t.on_batch([[like(1, 11)]])
    restored = NotifyThrottle(5.0, t.snapshot(), clock=clock)
    assert restored.notify_at() == t.notify_at()
    assert restored.on_eof()[0] == [NotificationUpdate(AUTHOR, 1, (), True)]


def test_quiet_pairs_are_forgotten() -> None:
    clock = Clock()
    t = NotifyThrottle(1.0, clock=clock)
    t.on_batch([[like(p, 10) for p in range(50)]])
    clock.now += 2
    t.on_batch([[like(99, 10)]])
    assert list(t.folded) == [(AUTHOR, 99)]


class TimedSink(DynamicSink[Any]):
    """Appends ``(monotonic time, item)`` for every item written."""

    def __init__(self, out: list[tuple[float, Any]]) -> None:
        self.out = out

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TimedPartition:
        return _TimedPartition(self.out)


class _TimedPartition(StatelessSinkPartition[Any]):
    def __init__(self, out: list[tuple[float, Any]]) -> None:
        self.out = out

    def write_batch(self, items: list[Any]) -> None:
        now = time.monotonic()
        self.out.extend((now, item) for item in items)


def storm(users: int, posts: int = 2) -> list[Any]:
    """``users`` likes of each post by distinct users, spread over time (pauses of
    30 ms between chunks of 10 messages)."""
    evs = [
        event(post, u, 1, T0_MS + i, author=AUTHOR)
        for i, (u, post) in enumerate(
            (u, p) for u in range(1, users + 1) for p in range(1, posts + 1)
        )
    ]
    out: list[Any] = []
    for i, msg in enumerate(to_messages(evs)):
        if i % 10 == 0:
            out.append(TestingSource.PAUSE(timedelta(milliseconds=30)))
        out.append(msg)
    return out


def test_a_storm_folds_at_most_once_per_interval_and_ends_exact(entry_point: Runner) -> None:
    interval = 0.3
    written: list[tuple[float, NotificationUpdate]] = []
    sinks = FanoutSinks(TestingSink([]), TimedSink(written), TestingSink([]))
    s = FlowSettings(count_shards=4, notify_min_interval_s=interval)
    t0 = time.monotonic()
    entry_point(build_flow(s, sinks, TestingSource(storm(300), batch_size=5), "throttle_test"))
    took = time.monotonic() - t0
    assert took > 4 * interval, "the storm lasted several intervals"
    store = NotificationStore().apply([u for _, u in written])
    for post in (1, 2):
        assert store.ledger[(AUTHOR, post)] == set(range(1, 301)), "every actor recorded"
        assert store.totals()[(AUTHOR, post)] == 300, "exact once the storm ended"
        folds = [at for at, u in written if u.post_id == post and u.fold]
        gaps = [b - a for a, b in itertools.pairwise(folds)]
        # less 0.1 s of sink write jitter; the last fold may be the end of the input
        assert all(g >= interval - 0.1 for g in gaps[:-1]), gaps
        assert len(folds) <= took / interval + 2
        assert store.row_updates[(AUTHOR, post)] <= len(folds)
        recorded = sum(len(u.actors) for _, u in written if u.post_id == post)
        assert recorded == 300 and len(folds) < recorded / 10, "far fewer folds than likes"
