"""Reading what lands on a Kafka topic from 'now' on, for integration tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition


class TopicWatcher:
    """Remembers the topic's end offsets at creation; reads everything after them."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"t-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        parts = self._c.list_topics(topic, timeout=10).topics[topic].partitions
        self._c.assign(
            [
                TopicPartition(
                    topic, p, self._c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                )
                for p in parts
            ]
        )
        self.messages: list[Any] = []

    def poll_for(self, seconds: float) -> list[Any]:
        """Everything that arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for m in self._c.consume(500, timeout=0.5):
                if m.error() is None:
                    self.messages.append(m)
        return self.messages

    def wait_until(self, done: Callable[[list[Any]], bool], timeout: float = 90) -> list[Any]:
        """Read until ``done(messages)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out on {self.topic}: {len(self.messages)} read")
            self.poll_for(0.5)
        return self.messages

    def values(self) -> list[dict[str, Any]]:
        """Decoded JSON values read so far."""
        return [json.loads(m.value()) for m in self.messages]

    def close(self) -> None:
        self._c.close()
