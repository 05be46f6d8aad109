"""Postgres compacted counts: ``post_like_counts(post_id, like_count, seq, updated_at)``.

Guarantee: exactly-once effect under replay. One upsert per batch writes absolute counts
and only where the stored ``seq`` is lower; replayed or older counts change nothing.
Rows are written in ``post_id`` order so concurrent workers cannot deadlock.
"""

from __future__ import annotations

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from core.records import CountUpdate, latest_per_post
from sinks.retry import with_retries

UPSERT_SQL = """
INSERT INTO post_like_counts AS c (post_id, like_count, seq, updated_at)
SELECT p, n, s, now() FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS t(p, n, s)
ORDER BY p
ON CONFLICT (post_id) DO UPDATE
    SET like_count = EXCLUDED.like_count, seq = EXCLUDED.seq, updated_at = now()
    WHERE c.seq < EXCLUDED.seq"""


def write_counts(conn: psycopg.Connection, updates: list[CountUpdate]) -> None:
    """Apply ``updates`` in one transaction."""
    rows = latest_per_post(updates)
    if not rows:
        return
    with conn.transaction():
        conn.execute(
            UPSERT_SQL,
            ([u.post_id for u in rows], [u.count for u in rows], [u.seq for u in rows]),
        )


class _PostgresCountPartition(StatelessSinkPartition[CountUpdate]):
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection | None = None

    def _write(self, items: list[CountUpdate]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        write_counts(self._conn, items)

    def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def write_batch(self, items: list[CountUpdate]) -> None:
        with_retries(
            "postgres counts",
            lambda: self._write(items),
            (psycopg.OperationalError,),
            on_retry=self._reset,
        )

    def close(self) -> None:
        self._reset()


class PostgresCountSink(DynamicSink[CountUpdate]):
    """Counts into ``post_like_counts``, versioned by ``seq``."""

    def __init__(self, url: str) -> None:
        self._url = url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresCountPartition:
        return _PostgresCountPartition(self._url)
