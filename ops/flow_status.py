"""Lag of each dataflow: Kafka end offsets minus the offsets it has processed."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
from confluent_kafka import Consumer, TopicPartition

from core.settings import CommonSettings
from schemas.redis_keys import LAST_DRIFT_KEY, flow_progress_key, flow_written_key


def end_offsets(bootstrap: str, topic: str, timeout: float = 5.0) -> dict[int, int]:
    """The high watermark of every partition of ``topic``."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "likes-status", "enable.auto.commit": False}
    )
    try:
        meta = c.list_topics(topic, timeout=timeout).topics[topic]
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
            for p in meta.partitions
        }
    finally:
        c.close()


class FlowWatch:
    """The flows' published progress (``flows.progress``) read over one Redis connection,
    held for as many readings as its user makes (a wait loop, an exporter's polls)."""

    def __init__(self, s: CommonSettings) -> None:
        self._r = redis.Redis.from_url(s.redis_url, socket_timeout=2)

    def __enter__(self) -> FlowWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._r.close()

    def lag(self, flow: str, ends: dict[int, int]) -> dict[str, Any]:
        """Messages below ``ends`` not yet processed by ``flow``, in total and per
        partition."""
        done = {int(k): int(v) for k, v in self._r.hgetall(flow_progress_key(flow)).items()}
        per = {p: max(0, end - done.get(p, 0)) for p, end in sorted(ends.items())}
        return {"lag": sum(per.values()), "per_partition": per}

    def passed(self, flow: str, ends: dict[int, int]) -> bool:
        """``flow`` has processed every message below ``ends``."""
        return int(self.lag(flow, ends)["lag"]) == 0

    def written_through(self, flow: str) -> float | None:
        """The earliest ``written_through`` mark of ``flow``'s processes: every one of
        them has written what its gathered sinks were handed before it; None when none
        publishes one."""
        keys = list(self._r.scan_iter(match=flow_written_key(flow), count=100))
        marks = self._r.mget(keys) if keys else []
        found = [float(m) for m in marks if m is not None]
        return min(found) if found else None


def flow_lag(s: CommonSettings, flow: str, ends: dict[int, int]) -> dict[str, Any]:
    """Messages not yet processed by ``flow``, in total and per partition (one reading)."""
    with FlowWatch(s) as watch:
        return watch.lag(flow, ends)


def flow_report(s: CommonSettings) -> dict[str, Any]:
    """Per-flow lag, and the last drift figures recorded by ``likes reconcile``."""
    from devstack.components import FLOW_NAMES

    ends = end_offsets(s.kafka_bootstrap, s.events_topic)
    with FlowWatch(s) as watch:
        flows = {name: watch.lag(name, ends) for name in FLOW_NAMES}
    with redis.Redis.from_url(s.redis_url, socket_timeout=2, decode_responses=True) as r:
        return {"flows": flows, "drift": r.get(LAST_DRIFT_KEY)}


def wait_drained(s: CommonSettings, flows: Iterable[str], timeout: float) -> float | None:
    """Seconds until every flow of ``flows`` has processed every event on the events
    topic now (None: not within ``timeout``)."""
    t0 = time.monotonic()
    ends = end_offsets(s.kafka_bootstrap, s.events_topic)
    with FlowWatch(s) as watch:
        while time.monotonic() - t0 < timeout:
            if all(watch.passed(flow, ends) for flow in flows):
                return time.monotonic() - t0
            time.sleep(0.2)
    return None
