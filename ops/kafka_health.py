"""The Kafka cluster as ``likes status`` shows it: live brokers and replication health."""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import AdminClient


def kafka_report(bootstrap: str, timeout: float = 5.0) -> dict[str, Any]:
    """Live broker ids, and the partitions (of every topic) whose in-sync replicas are
    fewer than their replicas (under-replicated) or that have no leader (offline)."""
    meta = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(
        timeout=timeout
    )
    under = offline = 0
    for topic in meta.topics.values():
        for part in topic.partitions.values():
            under += len(part.isrs) < len(part.replicas)
            offline += part.leader < 0
    return {
        "brokers": sorted(meta.brokers),
        "under_replicated_partitions": under,
        "offline_partitions": offline,
    }
