"""The counts flow end to end in-process: exact counts, windows, DLQ, hot posts, recovery."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource

from core.records import CountUpdate, HotChange
from core.settings import FlowSettings
from flows.counts import CountsSinks, build_flow
from tests.flows.conftest import Runner
from tests.flows.counts_outputs import SETTINGS, Outputs
from tests.flows.helpers import (
    T0_MS,
    apply_counts,
    apply_windows,
    event,
    net_per_post,
    to_messages,
    truth,
    workload,
)


def run_flow(
    entry_point: Runner,
    msgs: list[Any],
    s: FlowSettings = SETTINGS,
    batch_size: int = 50,
    **kw: Any,
) -> Outputs:
    out = Outputs()
    entry_point(build_flow(s, out.sinks(), TestingSource(msgs, batch_size=batch_size)), **kw)
    return out


def test_counts_and_windows_are_exact(entry_point: Runner) -> None:
    events = workload(3000, posts=40, users=60, viral=7)
    out = run_flow(entry_point, to_messages(events))
    expected = truth(events)
    assert apply_counts(out.counts) == expected
    assert net_per_post(apply_windows(out.windows)) == expected
    assert len(out.events) == len(events)
    assert not out.dead


def test_production_shape_counts_as_with_records(entry_point: Runner) -> None:
    """Without a like-events or windows sink (production) the stage hands the combiner
    bare tuples instead of :class:`Accepted` records: the same counts and hot changes,
    duplicates included."""
    events = workload(3000, posts=40, users=60, viral=7)
    msgs = to_messages(events)
    msgs += msgs[::7]  # redelivered copies
    full = run_flow(entry_point, msgs)
    counts: list[CountUpdate] = []
    hot: list[HotChange] = []
    bare = CountsSinks(TestingSink([]), None, None, [TestingSink(counts)], [TestingSink(hot)])
    entry_point(build_flow(SETTINGS, bare, TestingSource(msgs, batch_size=50)))
    assert apply_counts(counts) == apply_counts(full.counts) == truth(events)
    became_hot = {h.post_id for h in hot if h.state == "hot"}
    assert became_hot == {h.post_id for h in full.hot if h.state == "hot"}
    assert became_hot, "the viral post became hot"


def test_duplicates_and_stale_copies_change_nothing(entry_point: Runner) -> None:
    events = workload(2000, posts=30, users=40, seed=11)
    msgs = to_messages(events)
    rng = random.Random(3)
    keyed = [(float(i), m) for i, m in enumerate(msgs)]
    for _ in range(600):  # re-publish old messages somewhere after their first delivery
        i = rng.randrange(len(msgs))
        keyed.append((rng.uniform(i, len(msgs)), msgs[i]))
    replayed = [m for _, m in sorted(keyed, key=lambda km: km[0])]
    out = run_flow(entry_point, replayed)
    assert apply_counts(out.counts) == truth(events)
    assert len(out.events) == len(events), "each transition accepted exactly once"
    assert net_per_post(apply_windows(out.windows)) == truth(events)


def test_poison_messages_go_to_dead_letters_and_flow_continues(entry_point: Runner) -> None:
    events = workload(200, posts=5, users=10)
    msgs = to_messages(events)
    bad = [
        KafkaSourceMessage(
            key=b"k", value=b"\xff not json", topic="likes.events", partition=0, offset=10_000
        ),
        KafkaSourceMessage(
            key=b"k",
            value=json.dumps({**events[0], "post_id": -3}).encode(),
            topic="likes.events",
            partition=1,
            offset=10_001,
        ),
        KafkaSourceMessage(key=None, value=None, topic="likes.events", partition=2, offset=10_002),
    ]
    out = run_flow(entry_point, msgs[:50] + bad + msgs[50:])
    assert sorted(d.offset for d in out.dead) == [10_000, 10_001, 10_002]
    assert {d.value for d in out.dead} >= {b"\xff not json"}
    assert all(d.reason for d in out.dead)
    assert apply_counts(out.counts) == truth(events)


def test_late_event_becomes_a_correction_row(entry_point: Runner) -> None:
    # all on one edge-partition-independent post; the late one is 5 s behind
    evs = [event(1, u, 1, T0_MS + 5000 + u) for u in range(1, 20)]
    late = event(1, 99, 1, T0_MS)
    msgs = to_messages([*evs, late])
    out = run_flow(entry_point, msgs, batch_size=5)
    windows = apply_windows(out.windows)
    assert sum(likes for likes, _ in windows.values()) == 20
    assert windows[(1, T0_MS)] == (1, 0)


def test_viral_post_becomes_hot_then_cools(entry_point: Runner) -> None:
    viral = [event(8, u, 1, T0_MS + u * 10) for u in range(1, 120)]
    later = [event(16, u, 1, T0_MS + 60_000 + u) for u in range(1, 5)]  # same shard (8)
    out = run_flow(entry_point, to_messages(viral + later), batch_size=10)
    states = [h.state for h in out.hot if h.post_id == 8 and h.state != "update"]
    assert states == ["hot", "cooled"]
    cooled = next(h for h in out.hot if h.state == "cooled")
    assert cooled.peak_rate >= SETTINGS.hot_threshold


def test_crash_and_resume_matches_clean_run(tmp_path: Path) -> None:
    from bytewax.testing import run_main

    events = workload(2500, posts=25, users=50, seed=5, viral=3)
    msgs = to_messages(events)
    clean = Outputs()
    run_main(
        build_flow(SETTINGS, clean.sinks(), TestingSource(msgs, batch_size=25)),
        epoch_interval=timedelta(0),
    )
    db = tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    crashed = Outputs()
    with_abort = [*msgs[:1300], TestingSource.ABORT(), *msgs[1300:]]
    flow = build_flow(
        SETTINGS, crashed.sinks(), TestingSource(with_abort, batch_size=25), flow_id="crash"
    )
    for _ in range(2):
        run_main(
            flow, epoch_interval=timedelta(milliseconds=15), recovery_config=RecoveryConfig(str(db))
        )
    assert apply_counts(crashed.counts) == apply_counts(clean.counts) == truth(events)
    assert apply_windows(crashed.windows) == apply_windows(clean.windows)
    assert {a.event_id for a in crashed.events} == {a.event_id for a in clean.events}
