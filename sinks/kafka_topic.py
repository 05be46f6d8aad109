"""Kafka output with delivery reports checked: the DLQ and ``likes.hot_posts``.

Guarantee: at-least-once. ``write_batch`` returns only after the broker acknowledged
every record (idempotent producer, ``acks=all``); a failed delivery raises, and the batch
is produced again, in full: by a retry on a new producer, or by the flow resuming from
its last snapshot. A replay therefore appends identical copies; every record carries a
deterministic key and ``event_id`` header, so consumers drop the copies by ``event_id``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from sinks.base import DEFAULT_RETRY, RetryPolicy, StoreSink
from sinks.errors import KafkaDeliveryError


@dataclass(frozen=True)
class KafkaRecord:
    """One record to produce."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


ToRecord = Callable[[Any], KafkaRecord | None]
OnDelivery = Callable[[KafkaError | None, Message], None]
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


def _identity(item: Any) -> KafkaRecord | None:
    return item if isinstance(item, KafkaRecord) else None


def transient_kafka_error(err: KafkaError) -> bool:
    """Retriable by the broker's word, a timeout or lost transport, or fatal for this
    producer instance (an idempotent producer's fatal error is cured by a new one)."""
    return bool(err.retriable() or err.fatal() or err.code() in _TRANSIENT_CODES)


def produce_waiting(producer: Producer, wait_s: float | None = None, **record: Any) -> None:
    """Queue one record (``Producer.produce`` arguments); while the producer's local queue
    is full, serve delivery reports and retry, for up to ``wait_s`` (None: as long as it
    takes), then let ``BufferError`` through."""
    give_up = None if wait_s is None else time.monotonic() + wait_s
    while True:
        try:
            producer.produce(**record)
            return
        except BufferError:
            if give_up is not None and time.monotonic() > give_up:
                raise
            producer.poll(0.1)


class KafkaTopicSink(StoreSink[Any, Producer]):
    """Produce items to ``topic`` (``to_record`` maps each, None skips), acknowledged.

    ``name`` is the metrics label (default ``kafka_<topic>``).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        name: str | None = None,
        timeout_s: float = 30.0,
        to_record: ToRecord = _identity,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(name or "kafka_" + re.sub(r"\W+", "_", topic), retry)
        self.topic = topic
        self.timeout_s = timeout_s
        self.to_record = to_record
        self.config = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": "true",
            "acks": "all",
            "linger.ms": "5",
            "compression.type": "lz4",
        }

    def connect(self) -> Producer:
        return Producer(self.config)

    def disconnect(self, client: Producer) -> None:
        """Drop what a failed batch left queued: that batch is produced again in full."""
        client.purge()
        client.flush(0)

    def is_transient(self, error: Exception) -> bool:
        if isinstance(error, KafkaDeliveryError):
            return error.transient
        err = error.args[0] if isinstance(error, KafkaException) and error.args else None
        return isinstance(err, KafkaError) and transient_kafka_error(err)

    def write(self, client: Producer, items: list[Any]) -> None:
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for item in items:
            rec = self.to_record(item)
            if rec is not None:
                produce_waiting(
                    client,
                    topic=self.topic,
                    key=rec.key,
                    value=rec.value,
                    headers=rec.headers,
                    on_delivery=on_delivery,
                )
                client.poll(0)
        remaining = client.flush(self.timeout_s)
        if remaining or failures:
            raise KafkaDeliveryError(
                f"{self.topic}: {remaining} unacknowledged, {len(failures)} failed: "
                f"{[str(f) for f in failures[:3]]}",
                transient=all(transient_kafka_error(f) for f in failures),
            )
