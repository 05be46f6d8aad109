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

from core.records import CountUpdate, NotificationUpdate
from core.tally import Tally
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


# The rebuild of the aggregates of some posts from the edge store (``likes backfill``).
# Every ``post_likes`` row is a user who liked the post at least once (an edge is created
# by a like, and its ``created_at`` is that first like's event time), which is exactly
# who the live sink records in the ledger.
_MUTED = "EXISTS (SELECT 1 FROM post_mutes m WHERE m.post_id = {t}.post_id)"
# an edge ``e`` of post ``p`` that notifies: not a self-like, neither user erased
_NOTIFIES = """e.user_id <> p.author_id
      AND NOT EXISTS (SELECT 1 FROM erased_users x WHERE x.user_id IN (e.user_id, p.author_id))"""
# The ledger rows to drop are found by their edge (primary key lookups), not against the
# wanted rows: an anti-join against a CTE was planned as a nested loop over both (the CTE
# is estimated at one row), 153 s for 50 posts of 43,000 edges. ``OFFSET 0`` keeps the
# lookup a per-row subplan: pulled up into an anti-join, the erased-users test made the
# planner expect one edge in all and loop over every edge of the store for each ledger
# row (over 20 minutes for 50 posts of 105,000 likes in a store of 357,000 edges).
_REBUILD_LEDGER_SQL = f"""
WITH want AS (
    SELECT p.author_id AS recipient_id, e.post_id, e.user_id AS actor_id,
           date_trunc('milliseconds', e.created_at) AS liked_at
    FROM post_likes e JOIN posts p ON p.post_id = e.post_id
    WHERE e.post_id = ANY(%(posts)s) AND {_NOTIFIES}),
added AS (
    INSERT INTO notification_actors AS l (recipient_id, post_id, actor_id, liked_at, folded)
    SELECT w.recipient_id, w.post_id, w.actor_id, w.liked_at, NOT {_MUTED.format(t="w")}
    FROM want w
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING 1),
dropped AS (
    DELETE FROM notification_actors l
    WHERE l.post_id = ANY(%(posts)s) AND NOT EXISTS (
        SELECT 1 FROM post_likes e JOIN posts p ON p.post_id = e.post_id
        WHERE e.post_id = l.post_id AND e.user_id = l.actor_id AND p.author_id = l.recipient_id
          AND {_NOTIFIES}
        OFFSET 0)
    RETURNING 1),
folded AS (
    UPDATE notification_actors l SET folded = true
    WHERE l.post_id = ANY(%(posts)s) AND NOT l.folded AND NOT {_MUTED.format(t="l")}
    RETURNING 1)
SELECT (SELECT count(*) FROM added) + (SELECT count(*) FROM dropped)
       + (SELECT count(*) FROM folded)"""
_REBUILD_AGGREGATES_SQL = f"""
WITH agg AS (
    SELECT l.recipient_id, l.post_id, count(*) AS n, max(l.liked_at) AS at,
           (array_agg(l.actor_id ORDER BY l.liked_at DESC, l.actor_id DESC))[1:{RECENT_ACTORS}]
               AS newest,
           array_agg(l.actor_id) AS everyone
    FROM notification_actors l
    WHERE l.post_id = ANY(%(posts)s) AND l.folded AND NOT {_MUTED.format(t="l")}
    GROUP BY l.recipient_id, l.post_id),
gone AS (
    DELETE FROM notifications n
    WHERE n.post_id = ANY(%(posts)s) AND NOT {_MUTED.format(t="n")} AND NOT EXISTS (
        SELECT 1 FROM agg WHERE (agg.recipient_id, agg.post_id) = (n.recipient_id, n.post_id))
    RETURNING 1),
put AS (
    INSERT INTO notifications AS n
        (recipient_id, post_id, actor_ids, total_actors, updated_at, updates)
    SELECT recipient_id, post_id, newest, n, at, 1 FROM agg
    ORDER BY recipient_id, post_id
    ON CONFLICT (recipient_id, post_id) DO UPDATE SET
        actor_ids = EXCLUDED.actor_ids, total_actors = EXCLUDED.total_actors,
        updated_at = EXCLUDED.updated_at, updates = n.updates + 1
    WHERE n.total_actors <> EXCLUDED.total_actors OR n.updated_at <> EXCLUDED.updated_at
       OR cardinality(n.actor_ids) <> cardinality(EXCLUDED.actor_ids)
       OR NOT n.actor_ids <@ (SELECT agg.everyone FROM agg
                              WHERE (agg.recipient_id, agg.post_id) = (n.recipient_id, n.post_id))
    RETURNING 1)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM put)"""


def rebuild_notifications(conn: psycopg.Connection, posts: list[int]) -> tuple[int, int]:
    """Bring the ledger and the aggregates of ``posts`` to what the edge store implies;
    ``(ledger rows changed, aggregate rows changed)``, both 0 when nothing differed."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        row = conn.execute(_REBUILD_LEDGER_SQL, {"posts": posts}).fetchone()
        agg = conn.execute(_REBUILD_AGGREGATES_SQL, {"posts": posts}).fetchone()
    return int(row[0]) if row else 0, int(agg[0]) if agg else 0


class PostgresNotificationRebuildSink(PostgresSink[CountUpdate]):
    """Rebuilds the notifications of each post it is given from the edge store
    (``likes backfill``): what the live sink would hold had it folded every like now.

    Guarantee: idempotent (a second rebuild changes nothing) and safe beside the live
    sink: each batch is one repeatable-read transaction, so a live write it overlaps is
    a serialization failure, retried (by the base) on a fresh snapshot, never a lost or
    doubled actor. Muted posts get their ledger only, as from the live sink. ``written``
    counts the aggregate rows it changed (``tally``)."""

    def __init__(self, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__("postgres_notifications_rebuild", url, retry)
        self.tally = Tally()  # aggregate rows changed
        self.ledger = Tally()  # ledger rows changed

    def write(self, client: psycopg.Connection, items: list[CountUpdate]) -> None:
        ledger, rows = rebuild_notifications(client, sorted({u.post_id for u in items}))
        self.ledger.add(ledger)
        self.tally.add(rows)
