"""Step ids that hold recovery state are pinned: renaming one loses that state.

Bytewax keys every snapshot by the full step id path (table ``snaps``, column
``step_id``): the Kafka input's offsets and each stateful stage's state. If a test here
fails, either restore the id or migrate the recovery store (and say so in the change).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.dataflow import Dataflow, Operator
from bytewax.inputs import FixedPartitionedSource
from bytewax.outputs import FixedPartitionedSink
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from core.settings import FlowSettings
from flows import analytics, counts, fanout
from flows.production_sinks import analytics_sinks, counts_sinks, fanout_sinks
from flows.progress import OffsetProgress
from sinks.owner import OwnerOnlySink, ProcessLocalSink
from tests.flows.helpers import to_messages, workload

COUNTS_STATEFUL = [
    "likes_counts.read_events.kafka_input",
    "likes_counts.read_events.decode",  # decodes where the stages run; keeps no state (None)
    "likes_counts.dedupe_window",
    "likes_counts.count_posts",
    # Redis counts, then post_like_counts: written gathered per process (sinks.owner);
    # these sinks snapshot no state (None), so adding them left older stores resumable
    "likes_counts.write_counts_0",
    "likes_counts.write_counts_1",
    # the hot-post topics are produced gathered per process too (acknowledged at the
    # epoch's end at the latest), snapshotting None: older stores stay resumable
    "likes_counts.write_hot_1",
    "likes_counts.write_hot_2",
]
ANALYTICS_STATEFUL = [
    "likes_analytics.read_events.kafka_input",
    "likes_analytics.read_events.decode",
    "likes_analytics.dedupe_window",
    # ClickHouse sinks gather rows until an interval or the epoch ends (sinks.owner);
    # they snapshot no state (None), so adding them left older stores resumable
    "likes_analytics.write_like_events",
    "likes_analytics.write_windows",
    "likes_analytics.read_hot_episodes.kafka_input",
    "likes_analytics.write_hot_episodes",
]
FANOUT_STATEFUL = [
    "likes_fanout.read_events.kafka_input",
    "likes_fanout.read_events.decode",
    "likes_fanout.dedupe",
    "likes_fanout.trend_posts",
    "likes_fanout.throttle_notifications",
    "likes_fanout.write_notifications",  # gathered per process, as write_counts_1
    "likes_fanout.recent_likers",
]


def _is_stateful(step: Operator) -> bool:
    """A core step that snapshots: a partitioned input, ``stateful_batch``, or a
    partitioned output (every stateful operator is built on one of these)."""
    if type(step).__module__ != "bytewax.operators" or step.substeps:
        return False
    kind = type(step).__name__
    if kind == "input":
        return isinstance(getattr(step, "source", None), FixedPartitionedSource)
    if kind == "output":
        return isinstance(getattr(step, "sink", None), FixedPartitionedSink)
    return kind == "stateful_batch"


def stateful_step_ids(flow: Dataflow) -> list[str]:
    """Full ids of the steps that hold recovery state, in definition order."""
    out: list[str] = []

    def walk(step: Operator) -> None:
        if _is_stateful(step):
            out.append(step.step_id)
        for sub in step.substeps:
            walk(sub)

    for step in flow.substeps:
        walk(step)
    return out


@pytest.mark.parametrize("progress", [None, OffsetProgress()], ids=["untracked", "tracked"])
def test_production_flows_keep_their_stateful_step_ids(progress: OffsetProgress | None) -> None:
    s = FlowSettings()  # sinks and KafkaSource do no I/O until the flow runs
    counts_flow = counts.build_flow(s, counts_sinks(s), progress=progress)
    fanout_flow = fanout.build_flow(s, fanout_sinks(s), progress=progress)
    assert stateful_step_ids(counts_flow) == COUNTS_STATEFUL
    assert stateful_step_ids(fanout_flow) == FANOUT_STATEFUL


def test_a_replacement_source_sits_where_kafka_does() -> None:
    s = FlowSettings()
    flow = counts.build_flow(s, counts_sinks(s), source=TestingSource([]))
    assert stateful_step_ids(flow) == COUNTS_STATEFUL


def _snapshotted_ids(flow: Dataflow, db: Path) -> set[str]:
    db.mkdir()
    init_db_dir(db, 1)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(db)))
    ids: set[str] = set()
    for part in db.glob("*.sqlite3"):
        with sqlite3.connect(part) as conn:
            ids |= {row[0] for row in conn.execute("SELECT DISTINCT step_id FROM snaps")}
    return ids


def test_recovery_store_holds_exactly_the_pinned_ids(tmp_path: Path) -> None:
    msgs: list[Any] = to_messages(workload(200, posts=10, users=20))
    s = FlowSettings(count_shards=4, hot_threshold=3)  # hot posts: every sink writes
    counts_flow = counts.build_flow(
        s,
        counts.CountsSinks(  # shaped as in production (counts_sinks)
            TestingSink([]),
            TestingSink([]),
            TestingSink([]),
            [
                ProcessLocalSink(TestingSink([]), process_id=0, flush_s=0.05),
                ProcessLocalSink(TestingSink([]), process_id=0, flush_s=0.5),
            ],
            [
                TestingSink([]),
                ProcessLocalSink(TestingSink([]), process_id=0, flush_s=0.5),
                ProcessLocalSink(TestingSink([]), process_id=0, flush_s=0.5),
            ],
        ),
        TestingSource(msgs, batch_size=20),
    )
    fanout_flow = fanout.build_flow(
        s,
        fanout.FanoutSinks(
            TestingSink([]),
            ProcessLocalSink(TestingSink([]), process_id=0, flush_s=0.5),
            TestingSink([]),
        ),
        TestingSource(msgs, batch_size=20),
    )
    assert _snapshotted_ids(counts_flow, tmp_path / "counts") == set(COUNTS_STATEFUL)
    assert _snapshotted_ids(fanout_flow, tmp_path / "fanout") == set(FANOUT_STATEFUL)


@pytest.mark.parametrize("progress", [None, OffsetProgress()], ids=["untracked", "tracked"])
def test_the_analytics_flow_keeps_its_stateful_step_ids(progress: OffsetProgress | None) -> None:
    s = FlowSettings()
    flow = analytics.build_flow(s, analytics_sinks(s), progress=progress)
    assert stateful_step_ids(flow) == ANALYTICS_STATEFUL
    replaced = analytics.build_flow(s, analytics_sinks(s), TestingSource([]), TestingSource([]))
    assert stateful_step_ids(replaced) == ANALYTICS_STATEFUL


def test_the_analytics_recovery_store_holds_exactly_its_pinned_ids(tmp_path: Path) -> None:
    msgs: list[Any] = to_messages(workload(200, posts=10, users=20))
    flow = analytics.build_flow(
        FlowSettings(),
        analytics.AnalyticsSinks(  # shaped as in production (analytics_sinks)
            TestingSink([]),
            OwnerOnlySink(TestingSink([]), owns=True, flush_s=0.5),
            OwnerOnlySink(TestingSink([]), owns=True, flush_s=0.5),
            OwnerOnlySink(TestingSink([]), owns=True, flush_s=0.5),
        ),
        TestingSource(msgs, batch_size=20),
        TestingSource([]),
    )
    # a sink partition snapshots only in epochs it wrote in, and no hot episode came
    unwritten = {"likes_analytics.write_hot_episodes"}
    assert _snapshotted_ids(flow, tmp_path / "analytics") == set(ANALYTICS_STATEFUL) - unwritten
