"""The shared Kafka input: pure decoding, error triage, typed outputs, offsets for lag."""

from __future__ import annotations

import copy
import sys
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource
from confluent_kafka import KafkaError as ConfluentError

from core.records import DeadLetter
from core.settings import FlowSettings
from flows.decode import (
    FatalConsumerError,
    PartitionEvents,
    decode_batch,
    group_raw,
    triage_error,
)
from flows.kafka_input import consumer_config, kafka_events
from flows.progress import OffsetProgress
from flows.routing import partition_key
from tests.flows.conftest import Runner
from tests.flows.helpers import PARTITIONS, to_messages, workload

TOPIC = "likes.events"


def message(partition: int, offset: int | None, value: bytes | None = b"{}") -> Any:
    return KafkaSourceMessage(
        key=b"k", value=value, topic=TOPIC, partition=partition, offset=offset
    )


def consumer_error(code: int, partition: int, offset: int | None) -> Any:
    return KafkaError(ConfluentError(code), message(partition, offset, None))


def module_state() -> dict[tuple[str, str], Any]:
    """Deep copies of every mutable container held by a ``flows`` module."""
    return {
        (name, attr): copy.deepcopy(value)
        for name, mod in list(sys.modules.items())
        if name == "flows" or name.startswith("flows.")
        for attr, value in vars(mod).items()
        if isinstance(value, dict | list | set | bytearray) and not attr.startswith("__")
    }


def test_decoding_is_pure() -> None:
    batch = [*to_messages(workload(300, posts=10, users=20)), message(1, 9_999, b"\xff")]
    before = module_state()
    first = decode_batch(list(batch))
    second = decode_batch(list(batch))
    assert first == second
    assert module_state() == before, "decoding wrote module-level state"
    assert [d.offset for d in first if isinstance(d, DeadLetter)] == [9_999]
    groups = [g for g in first if isinstance(g, PartitionEvents)]
    assert sorted(g.partition for g in groups) == list(range(PARTITIONS))
    assert sum(len(g.events) for g in groups) == 300


def test_consumer_errors_are_triaged() -> None:
    with pytest.raises(FatalConsumerError):
        list(triage_error(consumer_error(ConfluentError._AUTO_OFFSET_RESET, 0, None)))
    assert list(triage_error(consumer_error(ConfluentError._TRANSPORT, 0, None))) == []
    dead = list(triage_error(consumer_error(ConfluentError._BAD_MSG, 2, 41)))
    assert [(d.partition, d.offset) for d in dead] == [(2, 41)]


def test_consumer_config_is_what_production_and_benchmarks_share() -> None:
    assert consumer_config(FlowSettings()) == {
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": "500",
    }


def run_input(
    entry_point: Runner, items: list[Any], progress: OffsetProgress | None
) -> tuple[Dataflow, list[tuple[str, PartitionEvents]], list[DeadLetter]]:
    flow = Dataflow("kafka_input_test")
    kin = kafka_events("read_events", flow, FlowSettings(), TestingSource(items, 7), progress)
    events: list[tuple[str, PartitionEvents]] = []
    dead: list[DeadLetter] = []
    op.output("events", kin.events, TestingSink(events))
    op.output("dead", kin.dead, TestingSink(dead))
    entry_point(flow)
    return flow, events, dead


def test_events_keyed_by_partition_and_errors_dead_lettered(entry_point: Runner) -> None:
    msgs = to_messages(workload(400, posts=10, users=30))
    errors = [
        consumer_error(ConfluentError._BAD_MSG, 1, 5_000),  # has a message
        consumer_error(ConfluentError._TRANSPORT, 0, None),  # transient: logged only
    ]
    _, events, dead = run_input(entry_point, [*msgs[:100], *errors, *msgs[100:]], None)
    assert all(key == partition_key(group.partition) for key, group in events)
    assert sum(len(group.events) for _, group in events) == len(msgs)
    assert [(d.partition, d.offset) for d in dead] == [(1, 5_000)]
    assert dead[0].reason.startswith("consumer error:")


def test_progress_step_records_highest_next_offset_per_partition(entry_point: Runner) -> None:
    msgs = to_messages(workload(400, posts=10, users=30))
    newest = {p: max(m.offset or 0 for m in msgs if m.partition == p) for p in range(PARTITIONS)}
    errors = [
        consumer_error(ConfluentError._BAD_MSG, 3, newest[3] + 7),
        consumer_error(ConfluentError._TRANSPORT, 0, None),
    ]
    progress = OffsetProgress()
    # newest first: an older offset read later must not move a partition back
    run_input(entry_point, [*reversed(msgs), *errors], progress)
    assert progress.offsets() == {
        **{p: o + 1 for p, o in newest.items()},
        3: newest[3] + 8,
    }


def test_without_progress_there_is_no_tracking_step() -> None:
    def ids(progress: OffsetProgress | None) -> list[str]:
        flow = Dataflow("ids")
        kafka_events("read_events", flow, FlowSettings(), TestingSource([]), progress)
        return [step.step_id for step in flow.substeps[0].substeps]

    assert "ids.read_events.track_offsets" not in ids(None)
    assert "ids.read_events.track_offsets" in ids(OffsetProgress())


def test_offset_progress_only_moves_forward() -> None:
    p = OffsetProgress()
    p.record("s", message(0, 10))
    p.record("s", message(0, 3))
    p.record("s", message(1, None))
    assert p.offsets() == {0: 11}


def test_polls_decode_as_their_messages_do(entry_point: Runner) -> None:
    """A batch source's items (one :class:`RawPartition` per poll of a partition) give
    the same events, dead letters and offsets as the same messages one by one."""
    msgs = [*to_messages(workload(400, posts=10, users=30)), message(2, 9_000, b"\xff")]
    error = consumer_error(ConfluentError._BAD_MSG, 1, 5_000)
    polls: list[Any] = [*group_raw(msgs[:150]), error, *group_raw(msgs[150:])]
    by_message, by_poll = OffsetProgress(), OffsetProgress()
    _, events_m, dead_m = run_input(entry_point, [*msgs, error], by_message)
    _, events_p, dead_p = run_input(entry_point, polls, by_poll)

    def per_partition(events: list[tuple[str, PartitionEvents]]) -> dict[int, list[Any]]:
        out: dict[int, list[Any]] = {}
        for _, group in events:
            out.setdefault(group.partition, []).extend(group.events)
        return out

    assert per_partition(events_p) == per_partition(events_m)
    assert sorted((d.partition, d.offset) for d in dead_p) == [(1, 5_000), (2, 9_000)]
    assert sorted(dead_p, key=lambda d: d.offset) == sorted(dead_m, key=lambda d: d.offset)
    assert by_poll.offsets() == by_message.offsets()
