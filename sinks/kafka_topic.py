"""Kafka output with delivery reports checked: the DLQ and ``likes.hot_posts``.

Guarantee: at-least-once. ``write_batch`` returns only after the broker acknowledged
every record (idempotent producer, ``acks=all``); any failed delivery raises, so the
flow resumes from its last snapshot and produces the batch again. Records carry a
deterministic key and an ``event_id`` header, so consumers can drop replayed copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from sinks.errors import KafkaDeliveryError


@dataclass(frozen=True)
class KafkaRecord:
    """One record to produce."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


ToRecord = Callable[[Any], KafkaRecord | None]


class _KafkaTopicPartition(StatelessSinkPartition[Any]):
    def __init__(
        self, config: dict[str, str], topic: str, timeout_s: float, to_record: ToRecord
    ) -> None:
        self._producer = Producer(config)
        self._topic = topic
        self._timeout = timeout_s
        self._to_record = to_record
        self._closed = False

    def write_batch(self, items: list[Any]) -> None:
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for item in items:
            rec = self._to_record(item)
            if rec is None:
                continue
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        key=rec.key,
                        value=rec.value,
                        headers=rec.headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self._producer.poll(0)
        remaining = self._producer.flush(self._timeout)
        if remaining or failures:
            raise KafkaDeliveryError(
                f"{self._topic}: {remaining} undelivered, {len(failures)} failed: {failures[:3]}"
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._producer.flush(self._timeout)


def _identity(item: Any) -> KafkaRecord | None:
    return item if isinstance(item, KafkaRecord) else None


class KafkaTopicSink(DynamicSink[Any]):
    """Produce items to ``topic`` (``to_record`` maps each, None skips), acknowledged."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        timeout_s: float = 30.0,
        to_record: ToRecord = _identity,
    ) -> None:
        self._to_record = to_record
        self._config = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": "true",
            "acks": "all",
            "linger.ms": "5",
            "compression.type": "lz4",
        }
        self._topic = topic
        self._timeout = timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaTopicPartition:
        return _KafkaTopicPartition(self._config, self._topic, self._timeout, self._to_record)
