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
import os
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.common import create_topic, id_base, log, settings


@dataclass
class Prefilled:
    topic: str
    partitions: int
    events: int
    duplicates: int
    posts: list[int]
    truth: dict[int, int]  # final like count per post that had events
    produce_seconds: float
    config: dict[str, object] = field(default_factory=dict)


def _zipf_cum(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(n)))


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
    """Create ``bench.events.<uuid>`` and fill it with ``n`` events (+ duplicates)."""
    from confluent_kafka import Producer

    topic = f"bench.events.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    create_topic(topic, partitions)
    rng = random.Random(seed)
    pbase, ubase, author = id_base(), id_base(), id_base() + 7
    post_ids = [pbase + i for i in range(1, posts + 1)]
    cum = _zipf_cum(posts, zipf_s)
    total = cum[-1]
    versions: dict[tuple[int, int], int] = defaultdict(int)
    t_start = time.time() - span_s
    producer = Producer(
        {
            "bootstrap.servers": settings().kafka_bootstrap,
            "linger.ms": 5,
            "batch.size": 16384,
            "compression.type": "lz4",
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    def produce(key: bytes, value: bytes, eid: bytes) -> None:
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    headers=[("id", eid), ("event_id", eid)],
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                producer.poll(0.05)

    dups_pending: list[tuple[int, int, bytes, bytes, bytes]] = []  # heap: (due, i, key, val, eid)
    dup_count = 0
    t0 = time.perf_counter()
    for i in range(n):
        post = post_ids[bisect.bisect_left(cum, rng.random() * total)]
        user = ubase + rng.randint(1, users)
        edge = (post, user)
        versions[edge] += 1
        v = versions[edge]
        eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ts = datetime.fromtimestamp(t_start + i * span_s / n, tz=UTC)
        idem = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.5 else None
        value = json.dumps(
            {
                "action": "LikeCreated" if v % 2 else "LikeRemoved",
                "post_id": post,
                "user_id": user,
                "event_id": eid,
                "author_id": author,
                "occurred_at": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "edge_version": v,
                "idempotency_key": idem,
            }
        ).encode()
        key = f"{post}:{user}".encode()
        produce(key, value, eid.encode())
        if rng.random() < dup_share:
            heapq.heappush(dups_pending, (i + rng.randint(10, 5000), i, key, value, eid.encode()))
        while dups_pending and dups_pending[0][0] <= i:
            _, _, k, val, e = heapq.heappop(dups_pending)
            produce(k, val, e)
            dup_count += 1
        if i % 10000 == 0:
            producer.poll(0)
    for _, _, k, val, e in sorted(dups_pending):
        produce(k, val, e)
        dup_count += 1
    left = producer.flush(120)
    secs = time.perf_counter() - t0
    if left or failures:
        raise RuntimeError(f"prefill of {topic}: {left} undelivered, failures {failures[:3]}")
    truth: dict[int, int] = defaultdict(int)
    for (post, _user), v in versions.items():
        truth[post] += v % 2
    log(f"prefilled {topic}: {n:,} events + {dup_count:,} duplicates in {secs:.1f}s")
    return Prefilled(
        topic=topic,
        partitions=partitions,
        events=n,
        duplicates=dup_count,
        posts=post_ids,
        truth=dict(truth),
        produce_seconds=secs,
        config={
            "events": n,
            "duplicates_delivered": dup_count,
            "messages": n + dup_count,
            "partitions": partitions,
            "posts": posts,
            "users": users,
            "zipf_s": zipf_s,
            "edges": len(versions),
            "event_time_span_s": span_s,
            "format": "likes.events JSON as Debezium publishes it; key post:user",
        },
    )


def redis_matches(url: str, truth: dict[int, int]) -> tuple[int, int]:
    """(posts whose ``likes:count`` equals the truth, posts checked)."""
    import redis

    r = redis.Redis.from_url(url, socket_timeout=10)
    posts = list(truth)
    ok = 0
    for i in range(0, len(posts), 5000):
        chunk = posts[i : i + 5000]
        vals = r.mget([f"likes:count:{p}" for p in chunk])
        ok += sum(
            1 for p, v in zip(chunk, vals, strict=True) if v is not None and int(v) == truth[p]
        )
    r.close()
    return ok, len(posts)


def trickle_produce(topic: str, rate: float, seconds: float, stop: Any = None) -> int:
    """Produce fresh likes to ``topic`` at ``rate`` per second, as the live CDC would."""
    from confluent_kafka import Producer

    rng = random.Random()
    pbase, ubase, author = id_base(), id_base(), id_base() + 7
    posts = 2000
    cum = _zipf_cum(posts, 1.1)
    producer = Producer(
        {
            "bootstrap.servers": settings().kafka_bootstrap,
            "linger.ms": 5,
            "compression.type": "lz4",
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
        }
    )
    n = int(rate * seconds)
    t0 = time.monotonic()
    sent = 0
    for i in range(n):
        if stop is not None and stop.is_set():
            break
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        post = pbase + 1 + bisect.bisect_left(cum, rng.random() * cum[-1])
        user = ubase + i + 1
        eid = str(uuid.uuid4())
        value = json.dumps(
            {
                "action": "LikeCreated",
                "post_id": post,
                "user_id": user,
                "event_id": eid,
                "author_id": author,
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "edge_version": 1,
                "idempotency_key": None,
            }
        ).encode()
        producer.produce(
            topic,
            key=f"{post}:{user}".encode(),
            value=value,
            headers=[("id", eid.encode()), ("event_id", eid.encode())],
        )
        producer.poll(0)
        sent += 1
    producer.flush(30)
    return sent
