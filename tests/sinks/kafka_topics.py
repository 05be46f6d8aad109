"""Per-test Kafka topics for sink tests: created fresh, read back in full, deleted."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
"""A record as a consumer sees it: key, value bytes, headers in order."""


def create_topic(bootstrap: str) -> str:
    """A new single-partition topic no one else uses; wait until it is visible."""
    topic = f"test.sinks.{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(
        [NewTopic(topic, num_partitions=1)], operation_timeout=30
    ).values():
        f.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == 1:
            return topic
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} did not appear")


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics([topic], operation_timeout=30).values():
        f.result()


def read_all(bootstrap: str, topic: str, timeout_s: float = 30) -> list[Record]:
    """Every record on the topic's only partition, in offset order."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-sinks-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < high - low:
            assert time.monotonic() < deadline, f"read {len(out)} of {high - low} from {topic}"
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.key(), msg.value() or b"", list(msg.headers() or [])))
        return out
    finally:
        c.close()


def consumer_view(records: list[Record]) -> list[Record]:
    """What a consumer that drops copies by the ``event_id`` header keeps, in order.

    Fails unless every copy is identical to the first record with its ``event_id``."""
    first: dict[bytes, Record] = {}
    for rec in records:
        event_id = dict(rec[2])["event_id"]
        assert first.setdefault(event_id, rec) == rec, f"a copy of {event_id!r} differs"
    return list(first.values())
