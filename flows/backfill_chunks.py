"""How the backfill reads the edge store: one chunk of posts per statement, in ``post_id``
order, and, when the live flows are to adopt the rebuild, the chunk's flow-state records
published by that same statement.

Guarantees:

* A chunk is the next ``chunk`` posts after ``after`` (with an edge changed since
  ``since``, if given), each whole: its count and ``seq`` (``sum(version)`` of its edges)
  come from one statement, so they describe the same set of edge transitions.
* With :class:`FlowStateRecords`, that statement runs in a transaction that first takes
  ``LOCK TABLE post_likes IN SHARE MODE`` (in-flight edge writes finish first, new ones
  wait until it commits: one statement, milliseconds; taken with a timeout and retried,
  so a busy edge store delays the backfill, never the API beyond one statement; a
  backfill that stalls inside that transaction, its process stopped or its host gone
  quiet, has its session ended by Postgres after ``idle_timeout_ms``, so live writes
  wait at most that long, and the chunk is read again when it wakes). It
  groups the chunk's edges by the Kafka partition of their events
  (``post_likes.key_hash`` % partitions, the partitioner's hash of the edge key,
  migration 009) and inserts, per partition of ``likes.events`` that holds some of their
  events, one outbox row: a :class:`~schemas.events.FlowStateRecord` with each post's
  liked edges and sum of versions over its edges in that partition, keyed by one of
  those edges, so Connect places it in that partition. Debezium publishes in commit
  order, so in each partition the record comes after every event it includes and before
  every event it does not: the counts flow's partition stage (and the fanout flow's
  dedupe stage) can adopt it exactly (:mod:`flows.adoption`). The counts returned are
  the same snapshot as the records. Reading a chunk twice (a retry, a rerun) publishes
  records the flows apply again at their own, later, positions, still exact there.
* A lost connection, a lock timeout or a session ended for idling is retried on a new
  connection as the sinks retry (``sinks.base.DEFAULT_RETRY``: up to a minute) before
  the backfill fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from core.tally import Tally
from schemas.events import FLOW_STATE_ACTION
from sinks.base import DEFAULT_RETRY, RetryPolicy, reporting
from sinks.postgres_store import TRANSIENT

# The posts of the chunk: those with an edge in (after, last], changed since ``since``.
_POSTS = """
    post_id > %(after)s AND post_id <= %(last)s
    AND (%(since)s::timestamptz IS NULL OR post_id IN (
        SELECT post_id FROM post_likes
        WHERE updated_at >= %(since)s AND post_id > %(after)s AND post_id <= %(last)s))"""

_CHUNK_SQL = f"""
SELECT post_id, count(*) FILTER (WHERE state = 'liked'), sum(version), count(*)
FROM post_likes WHERE {_POSTS}
GROUP BY post_id ORDER BY post_id LIMIT %(chunk)s"""

# The chunk's (post, partition) cells, one record per partition (its posts in post
# order, keyed by the smallest edge of the cell that comes first), the posts' totals.
_RECORDS_CHUNK_SQL = f"""
WITH chunk AS (
    SELECT post_id FROM post_likes WHERE {_POSTS}
    GROUP BY post_id ORDER BY post_id LIMIT %(chunk)s),
cells AS MATERIALIZED (
    SELECT post_id, key_hash %% %(partitions)s AS part,
           count(*) FILTER (WHERE state = 'liked') AS liked, sum(version) AS versions,
           count(*) AS edges, min(user_id) AS first_user
    FROM post_likes
    WHERE post_id > %(after)s AND post_id <= (SELECT max(post_id) FROM chunk)
      AND (%(since)s::timestamptz IS NULL OR post_id IN (SELECT post_id FROM chunk))
    GROUP BY 1, 2),
records AS (
    INSERT INTO like_outbox (event_id, edge_key, post_id, user_id, action, edge_version,
                             occurred_at, payload)
    SELECT g.event_id, g.first[1] || ':' || g.first[2], g.first[1], g.first[2],
           %(action)s::text, 0, now(),
           jsonb_build_object('event_id', g.event_id, 'action', %(action)s::text,
                              'partition', g.part, 'partitions', %(partitions)s::int,
                              'posts', g.posts)
    FROM (
        SELECT part, gen_random_uuid() AS event_id, min(ARRAY[post_id, first_user]) AS first,
               to_jsonb(array_agg(ARRAY[post_id, liked, versions] ORDER BY post_id)) AS posts
        FROM cells GROUP BY part) AS g
    RETURNING 1)
SELECT post_id, sum(liked), sum(versions), sum(edges), (SELECT count(*) FROM records)
FROM cells GROUP BY post_id ORDER BY post_id"""

_LOCK = "LOCK TABLE post_likes IN SHARE MODE"


@dataclass(frozen=True)
class PostSnapshot:
    """One post as the edge store has it: liked edges, ``sum(version)``, all edges."""

    post_id: int
    count: int
    seq: int
    edges: int


@dataclass(frozen=True)
class ChunkQuery:
    """Where the next chunk starts and what it may hold."""

    after: int
    last: int
    chunk: int
    since: datetime | None = None


class FlowStateRecords:
    """Publish flow-state records for every chunk read (module docstring); ``tally``
    counts the records written."""

    def __init__(
        self, partitions: int, *, lock_timeout_ms: int = 2000, idle_timeout_ms: int = 2000
    ) -> None:
        if partitions <= 0:
            raise ValueError("partitions must be positive")
        self.partitions = partitions
        self.lock_timeout_ms = lock_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.tally = Tally()

    def read(self, conn: psycopg.Connection, params: dict[str, Any]) -> list[Any]:
        """The chunk's rows, its records inserted in the same transaction."""
        params = {**params, "partitions": self.partitions, "action": FLOW_STATE_ACTION}
        with conn.transaction():
            conn.execute(
                f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)};"
                f" SET LOCAL idle_in_transaction_session_timeout = {int(self.idle_timeout_ms)}"
            )
            conn.execute(_LOCK)
            rows = conn.execute(_RECORDS_CHUNK_SQL, params).fetchall()
        if rows:
            self.tally.add(int(rows[0][4]))
        return rows


class ChunkReader:
    """Reads chunks over one connection of its own, reconnecting after a loss."""

    def __init__(
        self, url: str, records: FlowStateRecords | None = None, retry: RetryPolicy = DEFAULT_RETRY
    ) -> None:
        self._url, self._records = url, records
        self._retrying = retry.retrying(
            lambda e: isinstance(e, TRANSIENT), reporting("backfill_chunk_reads")
        )
        self._conn: psycopg.Connection | None = None

    def read(self, q: ChunkQuery) -> list[PostSnapshot]:
        """The posts of the chunk ``q`` names, in ``post_id`` order."""
        rows = self._retrying(self._attempt, q)
        return [PostSnapshot(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def _attempt(self, q: ChunkQuery) -> list[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        params = {"after": q.after, "last": q.last, "since": q.since, "chunk": q.chunk}
        try:
            if self._records is not None:
                return self._records.read(self._conn, params)
            return self._conn.execute(_CHUNK_SQL, params).fetchall()
        except TRANSIENT:
            if self._conn.broken:
                self.close()
            raise

    def backend_pid(self) -> int | None:
        """The Postgres backend serving this reader now (for diagnostics and tests)."""
        return self._conn.info.backend_pid if self._conn is not None else None

    def close(self) -> None:
        """Close the connection (a later read opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
