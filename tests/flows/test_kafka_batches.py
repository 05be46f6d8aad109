"""The flows' Kafka input on a real broker: each poll of a partition is one
:class:`~flows.decode.RawPartition`, every offset exactly once and in order, and its
recovery state (the next offset) is the one a per-message ``KafkaSource`` partition
keeps, so a flow resumes across the change in either direction without a gap or a
repeat."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from core.settings import CommonSettings, FlowSettings
from flows.decode import RawPartition
from flows.kafka_input import kafka_source

pytestmark = pytest.mark.integration

PARTITIONS = 3
Read = tuple[int, int, bytes | None]  # partition, offset, value


@pytest.fixture
def topic(stack: CommonSettings) -> Iterator[str]:
    name = f"test.batches.{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=PARTITIONS)]).values():
        f.result(30)
    yield name
    for f in admin.delete_topics([name]).values():
        f.result(30)


def _produce(bootstrap: str, topic: str, start: int, n: int) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap})
    values = [f"m{i}".encode() for i in range(start, start + n)]
    for i, value in enumerate(values):
        producer.produce(topic, value=value, partition=i % PARTITIONS)
    assert producer.flush(30) == 0
    return values


def _read(
    s: FlowSettings, topic: str, recovery: Path, batches: bool
) -> tuple[list[Any], list[Read]]:
    """Read the topic to its end, resuming from ``recovery``: the items, and every message."""
    flow = Dataflow("batch_probe")
    items: list[Any] = []
    src = kafka_source(s, tail=False, topic=topic, batches=batches)
    op.output("out", op.input("in", flow, src), TestingSink(items))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(recovery)))
    read: list[Read] = []
    for item in items:
        if isinstance(item, RawPartition):
            read.extend(
                (item.partition, o, v) for o, v in zip(item.offsets, item.values, strict=True)
            )
        else:
            assert isinstance(item, KafkaSourceMessage), item
            assert item.partition is not None and item.offset is not None
            read.append((item.partition, item.offset, item.value))
    return items, read


def _in_order(read: list[Read]) -> bool:
    return all(
        [o for p, o, _ in read if p == part] == sorted(o for p, o, _ in read if p == part)
        for part in range(PARTITIONS)
    )


def test_polls_carry_every_offset_once_and_resume_across_partition_kinds(
    stack: CommonSettings, topic: str, tmp_path: Path
) -> None:
    s = FlowSettings(kafka_bootstrap=stack.kafka_bootstrap, batch_size=37)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    first = _produce(stack.kafka_bootstrap, topic, 0, 300)
    _, read = _read(s, topic, recovery, batches=False)  # as the flows read before
    assert sorted(v for _, _, v in read if v) == sorted(first)

    second = _produce(stack.kafka_bootstrap, topic, 300, 400)
    items, read = _read(s, topic, recovery, batches=True)
    assert all(isinstance(i, RawPartition) for i in items)
    assert len(items) >= 400 / 37, "one item per poll of at most batch_size messages"
    assert all(0 < len(i.offsets) <= 37 for i in items)
    assert sorted(v for _, _, v in read if v) == sorted(second), "no gap, no repeat"
    assert _in_order(read)
    assert {p: min(o for q, o, _ in read if q == p) for p in range(PARTITIONS)} == {
        p: 100 for p in range(PARTITIONS)
    }

    third = _produce(stack.kafka_bootstrap, topic, 700, 60)
    _, read = _read(s, topic, recovery, batches=False)  # and back
    assert sorted(v for _, _, v in read if v) == sorted(third)
    _, read = _read(s, topic, recovery, batches=True)
    assert read == [], "nothing left to read"
