"""Flow-state records through the outbox: how ``likes backfill`` hands the edge store's
truth to the live counts flow, in the flow's own order.

Guarantee: for each batch of posts, one transaction that holds off every edge write
(``LOCK TABLE post_likes IN SHARE MODE``: in-flight writers finish first, new ones wait
until it commits, milliseconds) groups the posts' edges by the Kafka partition of their
events (``post_likes.key_hash``, the partitioner's hash of the edge key) inside Postgres,
one statement, and inserts, per partition of ``likes.events`` that holds some of their
edges' events, one outbox row: a
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

import psycopg

from core.records import CountUpdate
from core.tally import Tally
from schemas.events import FLOW_STATE_ACTION
from sinks.base import DEFAULT_RETRY, RetryPolicy
from sinks.postgres_store import Connection, PostgresSink

_LOCK = "LOCK TABLE post_likes IN SHARE MODE"
# Per post and partition of its edges' events (``key_hash`` % partitions, migration 009):
# liked edges, sum of versions, and the smallest user (so the record's key, that edge's,
# lands in the same partition); one record per partition, its posts in post order.
_RECORDS_SQL = """
INSERT INTO like_outbox (event_id, edge_key, post_id, user_id, action, edge_version,
                         occurred_at, payload)
SELECT g.event_id, g.first[1] || ':' || g.first[2], g.first[1], g.first[2], %(action)s::text, 0,
       now(),
       jsonb_build_object('event_id', g.event_id, 'action', %(action)s::text,
                          'partition', g.part, 'partitions', %(partitions)s::int,
                          'posts', g.posts)
FROM (
    SELECT part, gen_random_uuid() AS event_id, min(ARRAY[post_id, first_user]) AS first,
           jsonb_agg(jsonb_build_array(post_id, liked, versions) ORDER BY post_id) AS posts
    FROM (
        SELECT key_hash %% %(partitions)s AS part, post_id,
               count(*) FILTER (WHERE state = 'liked') AS liked, sum(version) AS versions,
               min(user_id) AS first_user
        FROM post_likes WHERE post_id = ANY(%(posts)s::bigint[])
        GROUP BY 1, 2) AS cells
    GROUP BY part) AS g"""


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
        self.tally = Tally()  # records written

    def write(self, client: Connection, items: list[CountUpdate]) -> None:
        posts = sorted({u.post_id for u in items})
        if not posts:
            return
        params = {"action": FLOW_STATE_ACTION, "partitions": self.partitions, "posts": posts}
        with client.transaction():
            client.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}")
            client.execute(_LOCK)
            written = client.execute(_RECORDS_SQL, params).rowcount
        self.tally.add(written)

    def is_transient(self, error: Exception) -> bool:
        # a lock timeout (busy edge store) is worth another try, like a lost connection
        return super().is_transient(error) or isinstance(error, psycopg.errors.LockNotAvailable)
