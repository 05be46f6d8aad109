"""Kafka administration for the benchmarks: their own topics and consumer groups."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.log import log
from core.settings import CommonSettings

RETENTION_MS = 6 * 3600 * 1000  # long enough for any run; a crashed run's topics age out


def _admin() -> AdminClient:
    return AdminClient({"bootstrap.servers": CommonSettings().kafka_bootstrap})


def create_topic(name: str, partitions: int) -> None:
    """Create ``name`` and wait until every partition is visible."""
    client = _admin()  # keep the client alive until the futures resolve
    new = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=1,
        config={"retention.ms": str(RETENTION_MS)},
    )
    for f in client.create_topics([new], operation_timeout=30).values():
        f.result()
    deadline = time.time() + 30
    while time.time() < deadline:
        md = client.list_topics(name, timeout=10).topics.get(name)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {name} did not appear")


def list_topics() -> list[str]:
    """Every topic name on the broker."""
    return list(_admin().list_topics(timeout=10).topics)


def delete_topics(names: list[str]) -> None:
    """Delete those of ``names`` that exist; failures are logged, not raised."""
    client = _admin()
    existing = set(client.list_topics(timeout=10).topics)
    todo = [n for n in names if n and n in existing]
    if not todo:
        return
    for name, f in client.delete_topics(todo, operation_timeout=30).items():
        try:
            f.result()
        except Exception as e:
            log(f"could not delete topic {name}: {e}")


def topics_matching(fragment: str) -> list[str]:
    """Topics whose name contains ``fragment``."""
    return [t for t in list_topics() if fragment in t]


def delete_groups(groups: list[str]) -> None:
    """Delete consumer groups; failures are logged, not raised."""
    if not groups:
        return
    try:
        for g, f in _admin().delete_consumer_groups(groups, request_timeout=15).items():
            try:
                f.result()
            except Exception as e:
                if "GROUP_ID_NOT_FOUND" not in str(e):
                    log(f"could not delete consumer group {g}: {e}")
    except Exception as e:
        log(f"could not delete consumer groups {groups}: {e}")


def committed_total(group: str, topic: str, partitions: int) -> int:
    """Messages of ``topic`` that consumer group ``group`` committed, over all partitions."""
    c = Consumer(
        {
            "bootstrap.servers": CommonSettings().kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, int(tp.offset)) for tp in tps)
    finally:
        c.close()
