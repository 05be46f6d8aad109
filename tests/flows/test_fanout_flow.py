"""The fanout flow in-process: notification updates and trending scores (recent likers:
``test_recent_flow.py``; the rate limit: ``test_notify_throttle.py``)."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from core.records import DeadLetter, NotificationUpdate
from core.settings import FlowSettings
from flows.fanout import FanoutSinks, build_flow
from flows.trending import TrendingScores
from tests.flows.conftest import Runner
from tests.flows.fanout_model import NotificationStore, notifying_actors
from tests.flows.helpers import T0_MS, event, to_messages, workload

SETTINGS = FlowSettings(count_shards=4, trending_half_life_s=60)


def run(
    entry_point: Runner, msgs: list[Any], flow_id: str = "fanout_test", **kw: Any
) -> tuple[list[NotificationUpdate], list[tuple[int, float | None]], list[DeadLetter]]:
    notes: list[NotificationUpdate] = []
    trend: list[tuple[int, float | None]] = []
    dead: list[DeadLetter] = []
    sinks = FanoutSinks(TestingSink(dead), TestingSink(notes), TestingSink(trend))
    entry_point(build_flow(SETTINGS, sinks, TestingSource(msgs, batch_size=20), flow_id), **kw)
    return notes, trend, dead


def final_scores(trend: list[tuple[int, float | None]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for post, score in trend:
        if score is None:
            out.pop(post, None)
        else:
            out[post] = score
    return out


def test_notifications_only_for_new_likes_by_others(entry_point: Runner) -> None:
    evs = [
        event(1, 5, 1, T0_MS, author=9),
        event(1, 5, 2, T0_MS + 1, author=9),
        event(1, 5, 3, T0_MS + 2, author=9),
        event(1, 9, 1, T0_MS + 3, author=9),
        event(2, 6, 1, T0_MS + 4, author=9),
    ]
    msgs = to_messages(evs)
    notes, _, _ = run(entry_point, msgs + msgs)  # every event delivered twice
    recorded = sorted({(u.post_id, actor) for u in notes for actor, _ in u.actors})
    assert recorded == [(1, 5), (2, 6)], "self-likes and unlikes do not notify"
    store = NotificationStore().apply(notes)
    assert store.totals() == {(9, 1): 1, (9, 2): 1}, "the re-like is not a new actor"


def test_trending_ranks_recent_engagement(entry_point: Runner) -> None:
    old = [event(1, u, 1, T0_MS + u) for u in range(1, 30)]  # 29 likes, long ago
    new = [event(2, u, 1, T0_MS + 600_000 + u) for u in range(1, 6)]  # 5 likes, 10 min later
    _, trend, _ = run(entry_point, to_messages(old + new))
    scores = final_scores(trend)
    assert scores[2] > scores[1], "recent likes outweigh older ones (half-life 60 s)"


def test_trending_score_is_log_sum_of_decayed_weights() -> None:
    t = TrendingScores(half_life_s=60)
    for ms in (T0_MS, T0_MS + 60_000, T0_MS + 120_000):
        score = t.add(7, ms)
    tau = 60_000 / math.log(2)
    from flows.trending import T0_MS as LANDMARK

    xs = [(ms - LANDMARK) / tau for ms in (T0_MS, T0_MS + 60_000, T0_MS + 120_000)]
    expected = max(xs) + math.log(sum(math.exp(x - max(xs)) for x in xs))  # exp(x) overflows
    assert math.isclose(score, expected, rel_tol=1e-12)
    assert t.forget_cold(T0_MS + 3_600_000) == [7]


def test_fanout_crash_and_resume_matches_clean_run(tmp_path: Path) -> None:
    msgs: list[Any] = to_messages(workload(1500, posts=20, users=40, seed=9))
    clean = run(run_main, msgs, epoch_interval=timedelta(0))
    db = tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    notes: list[NotificationUpdate] = []
    trend: list[tuple[int, float | None]] = []
    sinks = FanoutSinks(TestingSink([]), TestingSink(notes), TestingSink(trend))
    flow = build_flow(
        SETTINGS,
        sinks,
        TestingSource([*msgs[:700], TestingSource.ABORT(), *msgs[700:]], batch_size=20),
        "fanout_crash",
    )
    for _ in range(2):
        run_main(
            flow, epoch_interval=timedelta(milliseconds=15), recovery_config=RecoveryConfig(str(db))
        )
    events = workload(1500, posts=20, users=40, seed=9)
    assert NotificationStore().apply(notes).totals() == {
        pair: len(actors) for pair, actors in notifying_actors(events).items()
    }
    assert NotificationStore().apply(clean[0]).ledger == NotificationStore().apply(notes).ledger
    got, want = final_scores(trend), final_scores(clean[1])
    assert got.keys() == want.keys()
    assert all(math.isclose(got[p], want[p], rel_tol=1e-9) for p in want)
