"""Side channels of the freshness benchmark: the transport floor, and the events topic.

:class:`FloorProbe` is the machine's limit: a message produced to a bench topic (acks=all,
linger 5 ms like Connect), consumed by a consumer that writes a Redis key, which the
same poller as the probes sees. :class:`TopicWatch` notes when each probe's event
reaches the live events topic, which splits the API-to-Redis time into CDC and flow.
"""

from __future__ import annotations

import threading
import time

import redis
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition

from bench import names
from bench.kafka_admin import create_topic, delete_topics
from core.settings import CommonSettings

WATCH_FETCH_WAIT_MS = 10  # the bench's own consumers: as fast as the broker allows


def _consumer(group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": CommonSettings().kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": WATCH_FETCH_WAIT_MS,
        }
    )


class FloorProbe:
    """Kafka produce -> consume -> Redis SET, in a thread; the poller sees the key."""

    def __init__(self, redis_url: str) -> None:
        self.topic = names.topic("floor")
        create_topic(self.topic, 1)
        self.producer = Producer(
            {
                "bootstrap.servers": CommonSettings().kafka_bootstrap,
                "linger.ms": 5,
                "acks": "all",
                "compression.type": "lz4",
                "enable.idempotence": True,
            }
        )
        self.consumer = _consumer("bench-floor-ignored")
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])  # fresh topic
        self.redis_url = redis_url
        self.stop = threading.Event()
        self.seen = 0
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()
        self._warm_up()

    def _warm_up(self) -> None:
        """The first fetches after assignment are not the steady-state floor."""
        deadline = time.monotonic() + 15
        i = 0
        while self.seen < 5 and time.monotonic() < deadline:
            self.send(f"bench:floor:warmup:{i}")
            i += 1
            time.sleep(0.1)

    def _consume(self) -> None:
        r = redis.Redis.from_url(self.redis_url)
        while not self.stop.is_set():
            m = self.consumer.poll(0.05)
            if m is None or m.error() is not None:
                continue
            r.set(m.key(), b"1", ex=600)
            self.seen += 1
        r.close()

    def send(self, key: str) -> None:
        """Produce one floor message with key ``key``."""
        self.producer.produce(self.topic, key=key.encode(), value=b"x")
        self.producer.poll(0)

    def close(self) -> None:
        """Stop the consumer thread and delete the topic."""
        self.stop.set()
        self.thread.join(5)
        self.producer.flush(5)
        self.consumer.close()
        delete_topics([self.topic])


class TopicWatch:
    """When each watched key first appears on the live events topic (monotonic time)."""

    def __init__(self) -> None:
        topic = CommonSettings().events_topic
        self.consumer = _consumer("bench-watch-ignored")
        md = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in md.partitions])
        self.keys: set[bytes] = set()
        self.seen: dict[bytes, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        time.sleep(1.0)  # let the first fetches position at the end

    def _run(self) -> None:
        while not self.stop.is_set():
            for m in self.consumer.consume(500, 0.05):
                key = m.key()
                if m.error() is None and key in self.keys and key not in self.seen:
                    self.seen[key] = time.monotonic()

    def close(self) -> None:
        """Stop watching."""
        self.stop.set()
        self.thread.join(5)
        self.consumer.close()
