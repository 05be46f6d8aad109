"""Postgres like notifications: one ``notifications`` row per (recipient, post).

Guarantee: exactly-once effect under replay. Each batch runs one statement (one
transaction):

1. Actors go into the ``notification_actors`` ledger, keyed on (recipient, post, actor):
   an actor seen before is dropped there. Self-likes never enter, nor does an erased
   user (``erased_users``) as actor or recipient, so a replay after an erasure cannot
   bring their id back.
2. For the (recipient, post) pairs the flow asks to *fold* whose post is not muted
   (``post_mutes``), every ledger actor not yet in the aggregate (``folded`` false:
   recorded while the flow held the update back, or while the post was muted) is added
   to it and marked folded, in the same transaction: newest ten ``actor_ids``,
   ``total_actors``, ``updated_at`` (newest like), ``updates`` (+1 per row change).

So ``total_actors`` equals the ledger's actors whenever the row changes; a replayed
batch, or a fold with nothing new, changes nothing (not even ``updates``). While a post
is muted its likes are only recorded; after the mute is lifted they are folded in,
silently, with the post's first update (its next like, or a fold the rate limit held).
Rows written before this design (``folded`` defaults to true) are in their aggregates.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from core.records import NotificationUpdate
from sinks.base import DEFAULT_RETRY, RetryPolicy
from sinks.postgres_store import PostgresSink

RECENT_ACTORS = 10
UPSERT_SQL = f"""
WITH due AS (
    SELECT f.recipient_id, f.post_id
    FROM unnest(%(fold_r)s::bigint[], %(fold_p)s::bigint[]) AS f(recipient_id, post_id)
    WHERE NOT EXISTS (SELECT 1 FROM post_mutes m WHERE m.post_id = f.post_id)),
fresh AS (
    INSERT INTO notification_actors AS l (recipient_id, post_id, actor_id, liked_at, folded)
    SELECT x.r, x.p, x.a, x.t,
           EXISTS (SELECT 1 FROM due WHERE due.recipient_id = x.r AND due.post_id = x.p)
    FROM unnest(%(r)s::bigint[], %(p)s::bigint[], %(a)s::bigint[], %(t)s::timestamptz[])
        AS x(r, p, a, t)
    WHERE x.a <> x.r
      AND NOT EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id IN (x.a, x.r))
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING l.recipient_id, l.post_id, l.actor_id, l.liked_at, l.folded),
held AS (
    UPDATE notification_actors AS l SET folded = true
    FROM due
    WHERE l.recipient_id = due.recipient_id AND l.post_id = due.post_id AND NOT l.folded
    RETURNING l.recipient_id, l.post_id, l.actor_id, l.liked_at),
new AS (
    SELECT recipient_id, post_id, actor_id, liked_at FROM fresh WHERE folded
    UNION ALL
    SELECT recipient_id, post_id, actor_id, liked_at FROM held),
agg AS (
    SELECT recipient_id, post_id,
           array_agg(actor_id ORDER BY liked_at DESC, actor_id DESC) AS actors,
           count(*) AS n, max(liked_at) AS at
    FROM new GROUP BY recipient_id, post_id)
INSERT INTO notifications AS n
    (recipient_id, post_id, actor_ids, total_actors, updated_at, updates)
SELECT recipient_id, post_id, actors[1:{RECENT_ACTORS}], n, at, 1 FROM agg
ORDER BY recipient_id, post_id
ON CONFLICT (recipient_id, post_id) DO UPDATE SET
    actor_ids = (EXCLUDED.actor_ids || n.actor_ids)[1:{RECENT_ACTORS}],
    total_actors = n.total_actors + EXCLUDED.total_actors,
    updated_at = greatest(n.updated_at, EXCLUDED.updated_at),
    updates = n.updates + 1"""


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def write_notifications(conn: psycopg.Connection, updates: list[NotificationUpdate]) -> None:
    """Apply one batch: record every actor, fold where asked."""
    first: dict[tuple[int, int, int], int] = {}
    folds: set[tuple[int, int]] = set()
    for u in updates:
        for actor, ms in u.actors:
            key = (u.recipient_id, u.post_id, actor)
            first[key] = min(ms, first.get(key, ms))
        if u.fold:
            folds.add((u.recipient_id, u.post_id))
    rows = sorted(first.items())
    if not rows and not folds:
        return
    due = sorted(folds)
    with conn.transaction():
        conn.execute(
            UPSERT_SQL,
            {
                "fold_r": [r for r, _ in due],
                "fold_p": [p for _, p in due],
                "r": [k[0] for k, _ in rows],
                "p": [k[1] for k, _ in rows],
                "a": [k[2] for k, _ in rows],
                "t": [_ts(ms) for _, ms in rows],
            },
        )


class PostgresNotificationSink(PostgresSink[NotificationUpdate]):
    """Like notifications into ``notifications``, deduplicated by the actor ledger,
    folded where the flow asks and the post is not muted."""

    def __init__(self, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__("postgres_notifications", url, retry)

    def write(self, client: psycopg.Connection, items: list[NotificationUpdate]) -> None:
        write_notifications(client, items)
