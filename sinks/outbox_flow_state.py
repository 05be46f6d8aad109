"""Flow-state records through the outbox: how ``likes backfill`` hands the edge store's
truth to the live counts flow, in the flow's own order.

Guarantee: for each batch of posts, one transaction that holds off every edge write
(``LOCK TABLE post_likes IN SHARE MODE``: in-flight writers finish first, new ones wait
until it commits, milliseconds) reads the posts' edges and inserts, per Kafka partition
of ``likes.events`` that holds some of their edges' events, one outbox row: a
:class:`~schemas.events.FlowStateRecord` with each post's liked edges and sum of
versions over its edges in that partition, keyed by one of those edges, so Connect
places it in that partition (:func:`core.kafka_partition.partition_for`). Debezium
publishes in commit order, so in each partition the record comes after every event of
those edges that it includes and before every event it does not: the counts flow's
partition stage can adopt it exactly (:mod:`flows.partition_stage`). Writing a batch
twice (a retry, a rerun) publishes records the flow applies again at their own, later,
positions, still exact there. The lock is taken with a timeout and retried, so a busy
edge store delays the backfill, never the API beyond one batch's read.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import cast

import psycopg

from core.kafka_partition import partition_for
from core.records import CountUpdate
from schemas.events import FLOW_STATE_ACTION
from sinks.base import DEFAULT_RETRY, RetryPolicy
from sinks.postgres_store import Connection, PostgresSink

Edges = list[tuple[int, int, bool, int]]  # (post, user, liked, version)
_LOCK = "LOCK TABLE post_likes IN SHARE MODE"
_EDGES = """SELECT post_id, user_id, state = 'liked', version FROM post_likes
WHERE post_id = ANY(%s)"""
_INSERT = """INSERT INTO like_outbox (event_id, edge_key, post_id, user_id, action,
    edge_version, occurred_at, payload)
VALUES (%s, %s, %s, %s, %s, 0, now(), %s::jsonb)"""


@dataclass
class _PartitionTruth:
    """The posts' truth over their edges in one partition, and a key that lands there."""

    key: str
    posts: dict[int, list[int]] = field(default_factory=dict)  # post -> [liked, versions]


def truth_per_partition(edges: Edges, partitions: int) -> dict[int, _PartitionTruth]:
    """Group ``(post, user, liked, version)`` edges by the partition of their events; each
    group is keyed by one of its edges (so its record lands in the same partition). A
    post is listed only where it has edges: the flow's contributions come from events of
    edges, and the edge store never deletes an edge (erasure unlikes them)."""
    out: dict[int, _PartitionTruth] = {}
    for post, user, liked, version in edges:
        key = f"{post}:{user}"
        k = partition_for(key.encode(), partitions)
        part = out.get(k)
        if part is None:
            part = out[k] = _PartitionTruth(key)
        cell = part.posts.get(post)
        if cell is None:
            part.posts[post] = [int(liked), version]
        else:
            cell[0] += liked
            cell[1] += version
    return out


def record_payload(partition: int, partitions: int, truth: _PartitionTruth) -> tuple[str, str]:
    """``(event_id, payload JSON)`` of one flow-state record."""
    event_id = str(uuid.uuid4())
    posts = [[p, n, v] for p, (n, v) in sorted(truth.posts.items())]
    payload = {
        "event_id": event_id,
        "action": FLOW_STATE_ACTION,
        "partition": partition,
        "partitions": partitions,
        "posts": posts,
    }
    return event_id, json.dumps(payload, separators=(",", ":"))


class FlowStateSink(PostgresSink[CountUpdate]):
    """Flow-state records for every post it is given (their counts are not used: the
    edges are read again under the lock)."""

    def __init__(
        self,
        url: str,
        partitions: int,
        retry: RetryPolicy = DEFAULT_RETRY,
        *,
        lock_timeout_ms: int = 2000,
    ) -> None:
        super().__init__("outbox_flow_state", url, retry)
        self.partitions = partitions
        self.lock_timeout_ms = lock_timeout_ms
        self.records = 0

    def write(self, client: Connection, items: list[CountUpdate]) -> None:
        posts = sorted({u.post_id for u in items})
        if not posts:
            return
        with client.transaction():
            client.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}")
            client.execute(_LOCK)
            edges = cast(Edges, client.execute(_EDGES, (posts,)).fetchall())
            rows = []
            for k, truth in sorted(truth_per_partition(edges, self.partitions).items()):
                event_id, payload = record_payload(k, self.partitions, truth)
                post, user = truth.key.split(":")
                rows.append((event_id, truth.key, post, user, FLOW_STATE_ACTION, payload))
            client.cursor().executemany(_INSERT, rows)
        self.records += len(rows)

    def is_transient(self, error: Exception) -> bool:
        # a lock timeout (busy edge store) is worth another try, like a lost connection
        return super().is_transient(error) or isinstance(error, psycopg.errors.LockNotAvailable)
