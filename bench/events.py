"""Pre-filled event topics in the exact ``likes.events`` wire format.

Values are what Debezium's outbox router publishes from the ``payload`` JSONB column
(Postgres' jsonb key order and ``", "``/``": "`` separators), keys are ``post:user``,
headers ``id`` and ``event_id``; the producer mirrors Kafka Connect's (lz4, linger 5 ms,
16 KiB batches, idempotent, murmur2 partitioner like the Java client), so one edge's
events share a partition. Posts follow a Zipf law; each edge alternates like/unlike
with versions 1, 2, 3, ...; about 1 % of events are delivered twice (Debezium's
at-least-once), later in the stream.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from confluent_kafka import Producer

from bench import names
from bench.fixtures import id_base
from bench.kafka_admin import create_topic
from bench.log import log
from core.settings import CommonSettings
from schemas.events import rfc3339
from schemas.redis_keys import count_key

Record = tuple[bytes, bytes, bytes]  # key, value, event id
_BULK = {  # Connect's batch size; room to queue a whole prefill
    "batch.size": 16384,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}


@dataclass
class Prefilled:
    """A topic filled with events, and the like count each post must end with."""

    topic: str
    partitions: int
    events: int
    duplicates: int
    truth: dict[int, int]  # final like count per post that had events
    config: dict[str, object] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        """Input messages: events and redelivered duplicates."""
        return self.events + self.duplicates


def record(
    post: int, user: int, version: int, at: datetime, author: int, eid: str, idem: str | None
) -> Record:
    """One ``likes.events`` message as Debezium publishes it."""
    value = {  # jsonb key order: by length, then bytes
        "action": "LikeCreated" if version % 2 else "LikeRemoved",
        "post_id": post,
        "user_id": user,
        "event_id": eid,
        "author_id": author,
        "occurred_at": rfc3339(at),
        "edge_version": version,
        "idempotency_key": idem,
    }
    return f"{post}:{user}".encode(), json.dumps(value).encode(), eid.encode()


class TopicWriter:
    """A producer configured like Kafka Connect's, with every delivery checked."""

    def __init__(self, topic: str, extra: dict[str, int] | None = None) -> None:
        self.topic = topic
        self.failures: list[str] = []
        config: dict[str, object] = {
            "bootstrap.servers": CommonSettings().kafka_bootstrap,
            "linger.ms": 5,
            "compression.type": "lz4",
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
        }
        self.producer = Producer({**config, **(extra or {})})

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self.failures.append(str(err))

    def send(self, rec: Record) -> None:
        """Produce one record, waiting while the local queue is full."""
        key, value, eid = rec
        headers = [("id", eid), ("event_id", eid)]
        while True:
            try:
                self.producer.produce(
                    self.topic, key=key, value=value, headers=headers, on_delivery=self._delivered
                )
                self.producer.poll(0)
                return
            except BufferError:
                self.producer.poll(0.05)

    def close(self, timeout: float = 120.0) -> None:
        """Flush; raise if anything was not delivered."""
        left = self.producer.flush(timeout)
        if left or self.failures:
            raise RuntimeError(f"{self.topic}: {left} undelivered, failures {self.failures[:3]}")


class ZipfPosts:
    """``n`` fresh post ids, picked with Zipf popularity (exponent ``s``)."""

    def __init__(self, n: int, s: float) -> None:
        self.base = id_base()
        self.cum = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(n)))

    def pick(self, rng: random.Random) -> int:
        """One post id."""
        return self.base + 1 + bisect.bisect_left(self.cum, rng.random() * self.cum[-1])


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class EdgeStream:
    """Events over Zipf-popular posts and uniform users; each edge alternates like/unlike."""

    def __init__(self, posts: int, users: int, zipf_s: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.posts = ZipfPosts(posts, zipf_s)
        self.ubase, self.author = id_base(), id_base() + 7
        self.users = users
        self.versions: dict[tuple[int, int], int] = defaultdict(int)

    def events(self, n: int, span_s: float) -> Iterator[Record]:
        """``n`` events with event times spread over the last ``span_s`` seconds."""
        t_start = time.time() - span_s
        rng = self.rng
        for i in range(n):
            edge = (self.posts.pick(rng), self.ubase + rng.randint(1, self.users))
            self.versions[edge] += 1
            at = datetime.fromtimestamp(t_start + i * span_s / n, tz=UTC)
            eid = _uuid(rng)
            idem = _uuid(rng) if rng.random() < 0.5 else None
            yield record(*edge, self.versions[edge], at, self.author, eid, idem)

    def truth(self) -> dict[int, int]:
        """Final like count per post: an edge is liked after an odd version."""
        out: dict[int, int] = defaultdict(int)
        for (post, _user), v in self.versions.items():
            out[post] += v % 2
        return dict(out)


def with_duplicates(recs: Iterator[Record], share: float, rng: random.Random) -> Iterator[Record]:
    """``recs`` with about ``share`` of them delivered again 10-5000 messages later."""
    pending: list[tuple[int, int, Record]] = []  # heap: (due, i, record)
    for i, rec in enumerate(recs):
        yield rec
        if rng.random() < share:
            heapq.heappush(pending, (i + rng.randint(10, 5000), i, rec))
        while pending and pending[0][0] <= i:
            yield heapq.heappop(pending)[2]
    for _, _, rec in sorted(pending):
        yield rec


def generate_and_produce(
    n: int,
    *,
    posts: int,
    users: int,
    partitions: int = 12,
    zipf_s: float = 1.1,
    dup_share: float = 0.01,
    span_s: float = 600.0,
    seed: int = 42,
) -> Prefilled:
    """Create ``bench.events.<pid>.<random>`` and fill it with ``n`` events (+ duplicates)."""
    topic = names.topic("events")
    create_topic(topic, partitions)
    stream = EdgeStream(posts, users, zipf_s, seed)
    writer = TopicWriter(topic, _BULK)
    t0 = time.perf_counter()
    sent = 0
    for rec in with_duplicates(stream.events(n, span_s), dup_share, stream.rng):
        writer.send(rec)
        sent += 1
    writer.close()
    secs, dups = time.perf_counter() - t0, sent - n
    log(f"prefilled {topic}: {n:,} events + {dups:,} duplicates in {secs:.1f}s")
    config: dict[str, object] = {
        "events": n,
        "duplicates_delivered": dups,
        "messages": sent,
        "partitions": partitions,
        "posts": posts,
        "users": users,
        "zipf_s": zipf_s,
        "edges": len(stream.versions),
        "event_time_span_s": span_s,
        "format": "likes.events JSON as Debezium publishes it; key post:user",
    }
    return Prefilled(topic, partitions, n, dups, stream.truth(), config)


def redis_matches(url: str, truth: dict[int, int]) -> tuple[int, int]:
    """(posts whose count in Redis equals the truth, posts checked)."""
    r = redis.Redis.from_url(url, socket_timeout=10)
    posts = list(truth)
    ok = 0
    for i in range(0, len(posts), 5000):
        chunk = posts[i : i + 5000]
        vals = r.mget([count_key(p) for p in chunk])
        ok += sum(
            1 for p, v in zip(chunk, vals, strict=True) if v is not None and int(v) == truth[p]
        )
    r.close()
    return ok, len(posts)


def trickle_produce(topic: str, rate: float, seconds: float, stop: threading.Event) -> int:
    """Produce first likes of fresh users to ``topic`` at ``rate`` per second, as the live
    CDC would; returns how many were sent."""
    rng = random.Random()
    posts, ubase, author = ZipfPosts(2000, 1.1), id_base(), id_base() + 7
    writer = TopicWriter(topic)
    t0 = time.monotonic()
    sent = 0
    while sent < int(rate * seconds) and not stop.is_set():
        time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
        now = datetime.now(UTC)
        writer.send(record(posts.pick(rng), ubase + sent + 1, 1, now, author, _uuid(rng), None))
        sent += 1
    writer.producer.flush(30)
    return sent
