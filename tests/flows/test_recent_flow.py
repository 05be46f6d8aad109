"""Recent likers through the whole fanout flow in-process (one worker and two): likes,
unlikes, duplicates, reordering and a crash give ``likes:recent:*`` equal to each post's
20 newest current likers."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from core.records import RecentLikers
from core.settings import FlowSettings
from flows.fanout import FanoutSinks, build_flow
from tests.flows.conftest import Runner
from tests.flows.fanout_model import apply_recent, newest_likers
from tests.flows.helpers import to_messages, workload


def interleave(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The events in a random order that keeps each edge's own order (as Kafka does:
    one edge is one partition; posts and partitions interleave freely)."""
    per_edge: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for ev in events:
        per_edge.setdefault((ev["post_id"], ev["user_id"]), []).append(ev)
    order = [edge for edge, evs in per_edge.items() for _ in evs]
    rng.shuffle(order)
    cursors = {edge: iter(evs) for edge, evs in per_edge.items()}
    return [next(cursors[edge]) for edge in order]


def with_duplicates(msgs: list[Any], rng: random.Random, share: float = 0.3) -> list[Any]:
    """Redelivered copies of earlier messages, spread over the stream."""
    out = list(msgs)
    for _ in range(int(len(msgs) * share)):
        i = rng.randrange(len(msgs))
        out.insert(rng.randrange(i, len(out) + 1), msgs[i])
    return out


def run(entry_point: Runner, msgs: list[Any], s: FlowSettings, **kw: Any) -> list[RecentLikers]:
    recent: list[RecentLikers] = []
    sinks = FanoutSinks(TestingSink([]), TestingSink([]), TestingSink([]), TestingSink(recent))
    entry_point(build_flow(s, sinks, TestingSource(msgs, batch_size=25), "recent_test"), **kw)
    return recent


def scenario(seed: int) -> tuple[list[dict[str, Any]], list[Any]]:
    rng = random.Random(seed)
    events = workload(4000, posts=6, users=90, seed=seed, viral=1)
    return events, with_duplicates(to_messages(interleave(events, rng)), rng)


def test_lists_equal_the_newest_current_likers(entry_point: Runner) -> None:
    events, msgs = scenario(11)
    truth = newest_likers(events)
    records = run(entry_point, msgs, FlowSettings(count_shards=4))
    assert apply_recent(records, truth) == truth
    finals = {r.post_id: r for r in records}  # per post, its last record (highest seq)
    assert all(r.seq == max(x.seq for x in records if x.post_id == p) for p, r in finals.items())


def test_holding_every_liker_needs_no_edge_store(entry_point: Runner) -> None:
    events, msgs = scenario(12)
    truth = newest_likers(events)
    records = run(entry_point, msgs, FlowSettings(count_shards=4, recent_margin=10_000))
    assert all(r.exact for r in records)
    assert apply_recent(records, {}) == truth, "exact lists alone give the truth"


def test_without_margin_unlikes_fall_back_to_the_edge_store(entry_point: Runner) -> None:
    events, msgs = scenario(13)
    truth = newest_likers(events)
    records = run(entry_point, msgs, FlowSettings(count_shards=4, recent_margin=0))
    assert any(not r.exact for r in records), "unlikes of held likers left gaps"
    assert apply_recent(records, truth) == truth


@pytest.mark.parametrize("epoch_ms", [15, 60_000], ids=["restored_state", "full_replay"])
def test_crash_and_resume_give_the_same_lists(tmp_path: Path, epoch_ms: int) -> None:
    events, msgs = scenario(14)
    truth = newest_likers(events)
    db = tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    recent: list[RecentLikers] = []
    sinks = FanoutSinks(TestingSink([]), TestingSink([]), TestingSink([]), TestingSink(recent))
    half = len(msgs) // 2
    source = TestingSource([*msgs[:half], TestingSource.ABORT(), *msgs[half:]], batch_size=25)
    flow = build_flow(FlowSettings(count_shards=4), sinks, source, "recent_crash")
    for _ in range(2):
        run_main(
            flow,
            epoch_interval=timedelta(milliseconds=epoch_ms),
            recovery_config=RecoveryConfig(str(db)),
        )
    assert apply_recent(recent, truth) == truth
    if epoch_ms == 60_000:  # nothing was snapshotted before the crash: all of it again
        assert len(recent) > len({(r.post_id, r.seq) for r in recent}), "lists were replayed"
