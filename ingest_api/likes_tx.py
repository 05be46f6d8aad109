"""The like/unlike state transition: one statement, so one transaction and one commit.

In that commit: the edge upsert (version + 1 only on a real change), the outbox row
(only on a change) and the completion of the caller's idempotency record with the
response, all only while the caller's claim token still owns that record (locked): a
request whose claim a retry took over changes nothing (409). A repeated like, or an
unlike of an edge not liked, changes nothing and writes nothing; a user in
``erased_users`` changes nothing (410). One statement is also one round trip: the hot
path of the API.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from core.kafka_partition import key_hash
from ingest_api.problems import ProblemError
from schemas.events import like_event_sql

_PAYLOAD = like_event_sql(
    event_id="%(event_id)s::text",
    action="%(action)s::text",
    post_id="%(post_id)s::bigint",
    user_id="%(user_id)s::bigint",
    version="up.version",
    updated_at="up.updated_at",
    idempotency_key="%(idem)s::text",
    author_id="p.author_id",
)

# cur is the edge as of the statement's snapshot; with no change of ours it gives the
# version to report, unless a concurrent transaction moved the edge meanwhile (then its
# state differs from the target and the caller reads the edge again).
_TAIL = f"""cur AS (
    SELECT version, state FROM post_likes WHERE post_id = %(post_id)s AND user_id = %(user_id)s),
ob AS (
    INSERT INTO like_outbox (event_id, edge_key, post_id, user_id, action, edge_version,
                             occurred_at, idempotency_key, payload)
    SELECT %(event_id)s, %(edge_key)s, %(post_id)s, %(user_id)s, %(action)s::text, up.version,
           up.updated_at, %(idem)s::text, {_PAYLOAD}
    FROM up, p),
res AS (
    SELECT EXISTS (SELECT 1 FROM up) AS changed,
           coalesce((SELECT version FROM up), (SELECT version FROM cur), 0) AS version,
           EXISTS (SELECT 1 FROM up)
             OR coalesce((SELECT state FROM cur), 'unliked') = %(state)s AS consistent),
idem AS (
    UPDATE idempotency_keys SET status_code = 200, completed_at = now(),
        response = jsonb_build_object('post_id', %(post_id)s::bigint,
            'user_id', %(user_id)s::bigint, 'liked', %(liked)s::boolean,
            'changed', res.changed, 'version', res.version)
    FROM res, p, er
    WHERE %(idem)s::text IS NOT NULL AND user_id = %(user_id)s AND idem_key = %(idem)s
      AND p.deleted_at IS NULL AND NOT er.erased AND NOT er.lost AND res.consistent
    RETURNING 1)
SELECT (SELECT deleted_at IS NOT NULL FROM p), res.changed, res.version, res.consistent,
       (SELECT erased FROM er), (SELECT lost FROM er)
FROM res"""

# The caller's claim, locked: without it (taken over by a retry) nothing is written.
_HEAD = """
WITH own AS (
    SELECT 1 FROM idempotency_keys
    WHERE user_id = %(user_id)s AND idem_key = %(idem)s AND claim_token = %(token)s
      AND status_code IS NULL
    FOR UPDATE),
er AS (
    SELECT EXISTS (SELECT 1 FROM erased_users WHERE user_id = %(user_id)s) AS erased,
           %(idem)s::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM own) AS lost),
p AS (SELECT post_id, author_id, deleted_at FROM posts WHERE post_id = %(post_id)s),"""

LIKE_SQL = f"""{_HEAD}
up AS (
    INSERT INTO post_likes AS e (post_id, user_id, state, created_at, updated_at, version,
                                 key_hash)
    SELECT p.post_id, %(user_id)s, 'liked', now(), now(), 1, %(key_hash)s FROM p, er
    WHERE p.deleted_at IS NULL AND NOT er.erased AND NOT er.lost
    ON CONFLICT (post_id, user_id) DO UPDATE
        SET state = 'liked', updated_at = now(), version = e.version + 1
        WHERE e.state <> 'liked'
    RETURNING e.version, e.updated_at),
{_TAIL}"""

UNLIKE_SQL = f"""{_HEAD}
up AS (
    UPDATE post_likes AS e SET state = 'unliked', updated_at = now(), version = e.version + 1
    FROM p, er
    WHERE e.post_id = p.post_id AND e.user_id = %(user_id)s AND e.state = 'liked'
      AND p.deleted_at IS NULL AND NOT er.erased AND NOT er.lost
    RETURNING e.version, e.updated_at),
{_TAIL}"""

CURRENT_SQL = "SELECT version FROM post_likes WHERE post_id = %s AND user_id = %s"
COMPLETE_IDEM_SQL = """
UPDATE idempotency_keys SET status_code = %s, response = %s, completed_at = now()
WHERE user_id = %s AND idem_key = %s AND claim_token = %s AND status_code IS NULL"""
LOST_CLAIM = (
    "a retry with the same Idempotency-Key took this request's claim over; this attempt "
    "changed nothing and the retry's answer stands"
)


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
    conn: AsyncConnection,
    *,
    post_id: int,
    user_id: int,
    liked: bool,
    idem_key: str | None = None,
    claim_token: uuid.UUID | None = None,
) -> LikeResult:
    """Move edge ``(post_id, user_id)`` to ``liked``; 404/410 for unknown/deleted posts,
    410 for an erased user (checked in the same statement that would write the edge);
    with ``idem_key``, only while ``claim_token`` owns its claim (409 otherwise).

    ``conn`` must be in autocommit mode: the statement is its own transaction.
    """
    params = {
        "post_id": post_id,
        "user_id": user_id,
        "event_id": uuid.uuid4(),
        "edge_key": f"{post_id}:{user_id}",
        "key_hash": key_hash(post_id, user_id),
        "idem": idem_key,
        "token": claim_token,
        "action": "LikeCreated" if liked else "LikeRemoved",
        "liked": liked,
        "state": "liked" if liked else "unliked",
    }
    cur = await conn.execute(LIKE_SQL if liked else UNLIKE_SQL, params)
    row = await cur.fetchone()
    return await finish(
        conn,
        row,
        post_id=post_id,
        user_id=user_id,
        liked=liked,
        idem_key=idem_key,
        claim_token=claim_token,
    )


async def finish(
    conn: AsyncConnection,
    row: Any,
    *,
    post_id: int,
    user_id: int,
    liked: bool,
    idem_key: str | None,
    claim_token: uuid.UUID | None = None,
) -> LikeResult:
    """The request's result from its statement row ``(deleted, changed, version,
    consistent, erased, lost)``: 409 for a claim taken over, 404/410 problems, or the
    edge as it is now (read again, and the idempotency record completed, when a
    concurrent transaction moved it)."""
    deleted, changed, version, consistent, erased, lost = row
    if lost:
        raise ProblemError(409, LOST_CLAIM)
    if erased:
        raise ProblemError(410, f"user {user_id} was erased: their likes cannot change")
    if deleted is None:
        raise ProblemError(404, f"post {post_id} does not exist")
    if deleted:
        raise ProblemError(410, f"post {post_id} was deleted")
    if consistent:
        return LikeResult(post_id, user_id, liked, bool(changed), int(version))
    # a concurrent transaction moved the edge after our snapshot: report it as it is now
    edge = await (await conn.execute(CURRENT_SQL, (post_id, user_id))).fetchone()
    result = LikeResult(post_id, user_id, liked, False, int(edge[0]) if edge else 0)
    if idem_key is not None:
        await conn.execute(
            COMPLETE_IDEM_SQL, (200, json.dumps(result.body()), user_id, idem_key, claim_token)
        )
    return result
