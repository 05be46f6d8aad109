"""The analytics flow in-process, and its split from the counts flow: exact like events,
windows and hot episodes; hot changes travel from the counts flow through their topic
unchanged; the production counts flow has no ClickHouse sink; a counts snapshot taken
while it still counted windows resumes without them, counts exact."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from core.records import Accepted, DeadLetter, HotChange, WindowPart
from core.settings import FlowSettings
from flows import counts
from flows.analytics import AnalyticsSinks, build_flow
from flows.decode import PartitionEvents, decode_batch
from flows.hot_episodes import decode_episode, episode_record
from flows.partition_stage import stage_builder
from flows.production_sinks import analytics_sinks, counts_sinks
from sinks.clickhouse_sinks import ClickHouseSink
from sinks.faults import fault_file
from sinks.owner import OwnerOnlySink
from tests.flows.conftest import Runner
from tests.flows.counts_outputs import SETTINGS
from tests.flows.counts_outputs import Outputs as CountsOutputs
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

HOT_TOPIC = "likes.hot_episodes"


class Outputs:
    """Lists that the TestingSinks append to (not cleared between runs)."""

    def __init__(self) -> None:
        self.dead: list[DeadLetter] = []
        self.events: list[Accepted] = []
        self.windows: list[WindowPart] = []
        self.hot: list[HotChange] = []

    def sinks(self) -> AnalyticsSinks:
        return AnalyticsSinks(
            TestingSink(self.dead),
            TestingSink(self.events),
            TestingSink(self.windows),
            TestingSink(self.hot),
        )


def hot_messages(changes: list[HotChange]) -> list[Any]:
    """The records the counts flow produces for ``changes``, as the topic returns them."""
    out = []
    for i, h in enumerate(changes):
        rec = episode_record(h)
        out.append(
            KafkaSourceMessage(key=rec.key, value=rec.value, topic=HOT_TOPIC, partition=0, offset=i)
        )
    return out


def run_analytics(
    entry_point: Runner, msgs: list[Any], hot: list[Any] | None = None, **kw: Any
) -> Outputs:
    out = Outputs()
    flow = build_flow(
        SETTINGS,
        out.sinks(),
        TestingSource(msgs, batch_size=50),
        TestingSource(hot or [], batch_size=10),
    )
    entry_point(flow, **kw)
    return out


def test_like_events_and_windows_are_exact(entry_point: Runner) -> None:
    events = workload(3000, posts=40, users=60, viral=7)
    msgs: list[Any] = to_messages(events)
    out = run_analytics(entry_point, msgs + msgs[:500])  # with redelivered copies
    assert net_per_post(apply_windows(out.windows)) == truth(events)
    assert len(out.events) == len(events), "each transition once"
    assert not out.dead and not out.hot


def test_late_event_becomes_a_correction_row(entry_point: Runner) -> None:
    evs = [event(1, u, 1, T0_MS + 5000 + u) for u in range(1, 20)]
    out = run_analytics(entry_point, to_messages([*evs, event(1, 99, 1, T0_MS)]))
    windows = apply_windows(out.windows)
    assert sum(likes for likes, _ in windows.values()) == 20
    assert windows[(1, T0_MS)] == (1, 0)


def test_the_counts_flows_hot_changes_arrive_unchanged(entry_point: Runner) -> None:
    viral = [event(8, u, 1, T0_MS + u * 10) for u in range(1, 120)]
    later = [event(16, u, 1, T0_MS + 60_000 + u) for u in range(1, 5)]
    made = CountsOutputs()
    msgs: list[Any] = to_messages(viral + later)
    run_main(counts.build_flow(SETTINGS, made.sinks(), TestingSource(msgs, batch_size=10)))
    assert [h.state for h in made.hot if h.state != "update"] == ["hot", "cooled"]
    garbage = KafkaSourceMessage(key=b"8", value=b"{", topic=HOT_TOPIC, partition=1, offset=3)
    out = run_analytics(entry_point, [], [*hot_messages(made.hot), garbage])
    assert out.hot == made.hot
    assert [(d.topic, d.offset, d.value) for d in out.dead] == [(HOT_TOPIC, 3, b"{")]


def test_an_episode_record_round_trips() -> None:
    h = HotChange(5, "cooled", 3, 140, T0_MS, T0_MS + 9000, T0_MS + 9000)
    (msg,) = hot_messages([h])
    assert decode_episode(msg) == h
    assert episode_record(h).headers == [
        ("event_id", f"hot-episode:5:{T0_MS}:{h.version}".encode())
    ]


def test_crash_and_resume_matches_clean_run(tmp_path: Path) -> None:
    events = workload(2500, posts=25, users=50, seed=5, viral=3)
    msgs: list[Any] = to_messages(events)
    clean = Outputs()
    run_main(
        build_flow(SETTINGS, clean.sinks(), TestingSource(msgs, batch_size=25), TestingSource([])),
        epoch_interval=timedelta(0),
    )
    db = tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    crashed = Outputs()
    source = TestingSource([*msgs[:1300], TestingSource.ABORT(), *msgs[1300:]], batch_size=25)
    flow = build_flow(SETTINGS, crashed.sinks(), source, TestingSource([]), flow_id="crash")
    for _ in range(2):
        run_main(
            flow, epoch_interval=timedelta(milliseconds=15), recovery_config=RecoveryConfig(str(db))
        )
    assert apply_windows(crashed.windows) == apply_windows(clean.windows)
    assert net_per_post(apply_windows(crashed.windows)) == truth(events)
    assert {a.event_id for a in crashed.events} == {a.event_id for a in clean.events}


def test_production_counts_flow_writes_nothing_to_clickhouse(tmp_path: Path) -> None:
    s = FlowSettings(home=tmp_path)
    sinks = counts_sinks(s)
    assert sinks.like_events is None and sinks.windows is None
    every = [sinks.dead_letters, *sinks.counts, *sinks.hot]
    assert not any(isinstance(x, ClickHouseSink) for x in every)
    analytics = analytics_sinks(s)
    gathering = [analytics.like_events, analytics.windows, analytics.hot_episodes]
    assert all(
        isinstance(x, OwnerOnlySink) and x.flush_s == s.clickhouse_flush_s for x in gathering
    )
    ch = [x.inner for x in gathering if isinstance(x, OwnerOnlySink)]
    assert all(isinstance(x, ClickHouseSink) for x in ch)
    assert {x.fault_file for x in ch if isinstance(x, ClickHouseSink)} == {
        fault_file(tmp_path, "clickhouse")
    }


def test_without_windows_the_stage_keeps_its_snapshot_shape() -> None:
    msgs: list[Any] = to_messages(workload(300, posts=5, users=30))
    full = stage_builder(SETTINGS, flow="counts", windows=True)(None)
    groups = [g for g in decode_batch(msgs) if isinstance(g, PartitionEvents)]
    full.on_batch(groups)
    old = full.snapshot()
    assert old[1][0], "the windowed stage has open windows"
    lean = stage_builder(SETTINGS, flow="counts", windows=False)(old)
    assert lean.snapshot()[0] == old[0] and lean.snapshot()[2] == old[2]
    assert lean.snapshot()[1] == ({}, 0), "same shape, no windows"
    (out,), _ = lean.on_batch(groups)  # every event again: all duplicates now
    assert out.accepted == [] and out.windows == [] and lean.notify_at() is None


def test_a_windowed_counts_snapshot_resumes_without_windows(tmp_path: Path) -> None:
    events = workload(2000, posts=20, users=40, seed=9, viral=4)
    msgs: list[Any] = to_messages(events)
    db = tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    before, after = CountsOutputs(), CountsOutputs()
    items: list[Any] = [*msgs[:900], TestingSource.ABORT(), *msgs[900:]]  # one ABORT: it fires once
    old = counts.build_flow(SETTINGS, before.sinks(), TestingSource(items, batch_size=20))
    lean_sinks = after.sinks()
    lean_sinks.like_events, lean_sinks.windows = None, None
    new = counts.build_flow(SETTINGS, lean_sinks, TestingSource(items, batch_size=20))
    recovery = RecoveryConfig(str(db))
    run_main(old, epoch_interval=timedelta(milliseconds=15), recovery_config=recovery)
    run_main(new, epoch_interval=timedelta(milliseconds=15), recovery_config=recovery)
    assert before.windows and not after.windows
    assert after.counts and apply_counts(before.counts) != truth(events), "resumed mid-way"
    assert apply_counts(before.counts + after.counts) == truth(events)
