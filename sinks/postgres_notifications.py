"""Postgres like notifications: one ``notifications`` row per (recipient, post).

Guarantee: exactly-once effect under replay. Each batch runs one statement (one
transaction): actors go into the ``notification_actors`` ledger first, and only actors
the ledger had not seen extend the aggregate (newest ten ``actor_ids``, ``total_actors``).
A replayed like event finds its actor in the ledger (keyed on recipient, post and actor)
and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from core.records import Accepted
from sinks.base import DEFAULT_RETRY, RetryPolicy
from sinks.postgres_store import PostgresSink

RECENT_ACTORS = 10
UPSERT_SQL = f"""
WITH fresh AS (
    INSERT INTO notification_actors AS l (recipient_id, post_id, actor_id, liked_at)
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::timestamptz[])
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING l.recipient_id, l.post_id, l.actor_id, l.liked_at),
agg AS (
    SELECT recipient_id, post_id, array_agg(actor_id ORDER BY liked_at DESC) AS actors,
           count(*) AS n, max(liked_at) AS at
    FROM fresh GROUP BY recipient_id, post_id)
INSERT INTO notifications AS n (recipient_id, post_id, actor_ids, total_actors, updated_at)
SELECT recipient_id, post_id, actors[1:{RECENT_ACTORS}], n, at FROM agg
ORDER BY recipient_id, post_id
ON CONFLICT (recipient_id, post_id) DO UPDATE SET
    actor_ids = (EXCLUDED.actor_ids || n.actor_ids)[1:{RECENT_ACTORS}],
    total_actors = n.total_actors + EXCLUDED.total_actors,
    updated_at = greatest(n.updated_at, EXCLUDED.updated_at)"""


def write_notifications(conn: psycopg.Connection, likes: list[Accepted]) -> None:
    """Apply one batch of notifying likes."""
    first: dict[tuple[int, int, int], int] = {}
    for a in likes:
        if a.author_id is not None:
            key = (a.author_id, a.post_id, a.user_id)
            first[key] = min(a.occurred_ms, first.get(key, a.occurred_ms))
    rows = sorted(first.items())
    if not rows:
        return
    with conn.transaction():
        conn.execute(
            UPSERT_SQL,
            (
                [k[0] for k, _ in rows],
                [k[1] for k, _ in rows],
                [k[2] for k, _ in rows],
                [datetime.fromtimestamp(ms / 1000, tz=UTC) for _, ms in rows],
            ),
        )


class PostgresNotificationSink(PostgresSink[Accepted]):
    """Like notifications into ``notifications``, deduplicated by the actor ledger."""

    def __init__(self, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__("postgres_notifications", url, retry)

    def write(self, client: psycopg.Connection, items: list[Accepted]) -> None:
        write_notifications(client, items)
