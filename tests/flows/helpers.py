"""Event generators and sink semantics shared by the flow tests."""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage

from core.records import CountUpdate, WindowPart
from schemas.events import LikeEvent

T0_MS = int(datetime(2026, 11, 21, 10, 0, tzinfo=UTC).timestamp() * 1000)
PARTITIONS = 4


def event(post: int, user: int, version: int, ms: int, author: int = 1) -> dict[str, Any]:
    """One event value as Debezium publishes it."""
    return {
        "event_id": str(uuid.UUID(int=random.getrandbits(128))),
        "action": "LikeCreated" if version % 2 else "LikeRemoved",
        "post_id": post,
        "user_id": user,
        "edge_version": version,
        "occurred_at": datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(),
        "idempotency_key": None,
        "author_id": author,
    }


def workload(
    n: int, posts: int, users: int, seed: int = 7, viral: int | None = None, spacing_ms: int = 5
) -> list[dict[str, Any]]:
    """``n`` in-order edge transitions (likes and unlikes) over the given posts and users."""
    rng = random.Random(seed)
    random.seed(seed)
    versions: dict[tuple[int, int], int] = defaultdict(int)
    out = []
    for i in range(n):
        post = viral if viral and rng.random() < 0.3 else rng.randint(1, posts)
        edge = (post, rng.randint(1, users))
        versions[edge] += 1
        out.append(event(edge[0], edge[1], versions[edge], T0_MS + i * spacing_ms))
    return out


def partition_of(ev: dict[str, Any]) -> int:
    """Edge-keyed partitioning, as the Kafka key ``post:user`` does."""
    return hash((ev["post_id"], ev["user_id"])) % PARTITIONS


def to_messages(events: list[dict[str, Any]]) -> list[KafkaSourceMessage[bytes, bytes]]:
    """Kafka messages with per-partition offsets."""
    offsets: dict[int, int] = defaultdict(int)
    out = []
    for ev in events:
        p = partition_of(ev)
        key = f"{ev['post_id']}:{ev['user_id']}".encode()
        out.append(
            KafkaSourceMessage(
                key=key,
                value=json.dumps(ev).encode(),
                topic="likes.events",
                partition=p,
                offset=offsets[p],
            )
        )
        offsets[p] += 1
    return out


def truth(events: list[dict[str, Any]]) -> dict[int, int]:
    """Expected like count per post: the last state of each edge."""
    last: dict[tuple[int, int], tuple[int, bool]] = {}
    for ev in events:
        edge = (ev["post_id"], ev["user_id"])
        if edge not in last or ev["edge_version"] > last[edge][0]:
            last[edge] = (ev["edge_version"], ev["action"] == "LikeCreated")
    counts: dict[int, int] = defaultdict(int)
    for (post, _), (_, liked) in last.items():
        counts[post] += int(liked)
    return dict(counts)


def apply_counts(updates: list[CountUpdate]) -> dict[int, int]:
    """What a seq compare-and-set store ends with."""
    best: dict[int, CountUpdate] = {}
    for u in updates:
        if u.post_id not in best or u.seq > best[u.post_id].seq:
            best[u.post_id] = u
    return {p: u.count for p, u in best.items()}


def apply_windows(rows: list[WindowPart]) -> dict[tuple[int, int], tuple[int, int]]:
    """What a ReplacingMergeTree(version) read with FINAL and summed over parts shows."""
    latest: dict[tuple[int, int, str], WindowPart] = {}
    for r in rows:
        k = (r.post_id, r.window_start_ms, r.part)
        if k not in latest or r.version >= latest[k].version:
            latest[k] = r
    out: dict[tuple[int, int], tuple[int, int]] = defaultdict(lambda: (0, 0))
    for (post, ws, _), r in latest.items():
        likes, unlikes = out[(post, ws)]
        out[(post, ws)] = (likes + r.likes, unlikes + r.unlikes)
    return dict(out)


def net_per_post(windows: dict[tuple[int, int], tuple[int, int]]) -> dict[int, int]:
    """Sum of ``net`` over each post's windows."""
    out: dict[int, int] = defaultdict(int)
    for (post, _), (likes, unlikes) in windows.items():
        out[post] += likes - unlikes
    return {p: n for p, n in out.items()}


def like_event(post: int, user: int, version: int, ms: int) -> LikeEvent:
    """One decoded event: created on odd versions, removed on even ones."""
    return LikeEvent(
        event_id=uuid.uuid4(),
        action="LikeCreated" if version % 2 else "LikeRemoved",
        post_id=post,
        user_id=user,
        edge_version=version,
        occurred_at=datetime.fromtimestamp(ms / 1000, tz=UTC),
    )
