"""Postgres compacted counts: ``post_like_counts(post_id, like_count, seq, updated_at)``.

Guarantee: exactly-once effect under replay. One upsert per batch writes absolute counts
and only where the stored ``seq`` is lower; replayed or older counts change nothing.
Forced counts (the counts flow adopted a backfill's truth, ``CountUpdate.forced``) are
written whatever is stored, in the same transaction.
Keyed on ``post_id``; rows are written in ``post_id`` order so concurrent workers cannot
deadlock.
"""

from __future__ import annotations

import psycopg

from core.records import CountUpdate, latest_per_post
from sinks.base import DEFAULT_RETRY, RetryPolicy
from sinks.postgres_store import PostgresSink

UPSERT_SQL = """
INSERT INTO post_like_counts AS c (post_id, like_count, seq, updated_at)
SELECT p, n, s, now() FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS t(p, n, s)
ORDER BY p
ON CONFLICT (post_id) DO UPDATE
    SET like_count = EXCLUDED.like_count, seq = EXCLUDED.seq, updated_at = now()
    WHERE c.seq < EXCLUDED.seq"""
# a rebuild (``likes backfill``) also corrects a different count at the same seq
REBUILD_SQL = (
    UPSERT_SQL + " OR (c.seq = EXCLUDED.seq AND c.like_count IS DISTINCT FROM EXCLUDED.like_count)"
)
FORCE_SQL = UPSERT_SQL.rsplit("WHERE", 1)[0]


def write_counts(
    conn: psycopg.Connection, updates: list[CountUpdate], *, rebuild: bool = False
) -> None:
    """Apply ``updates`` in one transaction."""
    latest = latest_per_post(updates)
    if not latest:
        return
    with conn.transaction():
        for sql, rows in (
            (REBUILD_SQL if rebuild else UPSERT_SQL, [u for u in latest if not u.forced]),
            (FORCE_SQL, [u for u in latest if u.forced]),
        ):
            if rows:
                conn.execute(
                    sql, ([u.post_id for u in rows], [u.count for u in rows], [u.seq for u in rows])
                )


class PostgresCountSink(PostgresSink[CountUpdate]):
    """Counts into ``post_like_counts``, versioned by ``seq`` (``rebuild``: also repairs a
    different count at the same ``seq``, for ``likes backfill``)."""

    def __init__(
        self, url: str, retry: RetryPolicy = DEFAULT_RETRY, *, rebuild: bool = False
    ) -> None:
        super().__init__("postgres_counts_rebuild" if rebuild else "postgres_counts", url, retry)
        self.rebuild = rebuild

    def write(self, client: psycopg.Connection, items: list[CountUpdate]) -> None:
        write_counts(client, items, rebuild=self.rebuild)
