"""The like/unlike state transition: one transaction, one commit.

In that commit: the edge upsert (version + 1 only on a real change), the outbox row
(only on a change) and the completion of the caller's idempotency record. A repeated
like, or an unlike of an edge not liked, changes nothing and writes nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from ingest_api.problems import ProblemError

_PAYLOAD = """jsonb_build_object(
    'event_id', %(event_id)s::text, 'action', %(action)s::text,
    'post_id', %(post_id)s::bigint, 'user_id', %(user_id)s::bigint,
    'edge_version', up.version,
    'occurred_at', to_char(up.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'idempotency_key', %(idem)s::text, 'author_id', p.author_id)"""

_OUTBOX = f"""ob AS (
    INSERT INTO like_outbox (event_id, edge_key, post_id, user_id, action, edge_version,
                             occurred_at, idempotency_key, payload)
    SELECT %(event_id)s, %(edge_key)s, %(post_id)s, %(user_id)s, %(action)s::text, up.version,
           up.updated_at, %(idem)s::text, {_PAYLOAD}
    FROM up, p)
SELECT (SELECT deleted_at IS NOT NULL FROM p), (SELECT version FROM up)"""

LIKE_SQL = f"""
WITH p AS (SELECT post_id, author_id, deleted_at FROM posts WHERE post_id = %(post_id)s),
up AS (
    INSERT INTO post_likes AS e (post_id, user_id, state, created_at, updated_at, version)
    SELECT p.post_id, %(user_id)s, 'liked', now(), now(), 1 FROM p WHERE p.deleted_at IS NULL
    ON CONFLICT (post_id, user_id) DO UPDATE
        SET state = 'liked', updated_at = now(), version = e.version + 1
        WHERE e.state <> 'liked'
    RETURNING e.version, e.updated_at),
{_OUTBOX}"""

UNLIKE_SQL = f"""
WITH p AS (SELECT post_id, author_id, deleted_at FROM posts WHERE post_id = %(post_id)s),
up AS (
    UPDATE post_likes AS e SET state = 'unliked', updated_at = now(), version = e.version + 1
    FROM p
    WHERE e.post_id = p.post_id AND e.user_id = %(user_id)s AND e.state = 'liked'
      AND p.deleted_at IS NULL
    RETURNING e.version, e.updated_at),
{_OUTBOX}"""

CURRENT_SQL = "SELECT version FROM post_likes WHERE post_id = %s AND user_id = %s"
COMPLETE_IDEM_SQL = """
UPDATE idempotency_keys SET status_code = %s, response = %s, completed_at = now()
WHERE user_id = %s AND idem_key = %s"""


@dataclass(frozen=True)
class LikeResult:
    """The viewer's edge after the transition."""

    post_id: int
    user_id: int
    liked: bool
    changed: bool
    version: int

    def body(self) -> dict[str, Any]:
        """The HTTP response body."""
        return {
            "post_id": self.post_id,
            "user_id": self.user_id,
            "liked": self.liked,
            "changed": self.changed,
            "version": self.version,
        }


async def set_like(
    conn: AsyncConnection, *, post_id: int, user_id: int, liked: bool, idem_key: str | None = None
) -> LikeResult:
    """Move edge ``(post_id, user_id)`` to ``liked``; 404/410 for unknown/deleted posts."""
    params = {
        "post_id": post_id,
        "user_id": user_id,
        "event_id": uuid.uuid4(),
        "edge_key": f"{post_id}:{user_id}",
        "idem": idem_key,
        "action": "LikeCreated" if liked else "LikeRemoved",
    }
    async with conn.transaction():
        cur = await conn.execute(LIKE_SQL if liked else UNLIKE_SQL, params)
        deleted, new_version = await cur.fetchone() or (None, None)
        if deleted is None:
            raise ProblemError(404, f"post {post_id} does not exist")
        if deleted:
            raise ProblemError(410, f"post {post_id} was deleted")
        changed = new_version is not None
        if not changed:
            row = await (await conn.execute(CURRENT_SQL, (post_id, user_id))).fetchone()
            new_version = row[0] if row else 0
        result = LikeResult(post_id, user_id, liked, changed, int(new_version))
        if idem_key is not None:
            await conn.execute(
                COMPLETE_IDEM_SQL, (200, json.dumps(result.body()), user_id, idem_key)
            )
    return result
