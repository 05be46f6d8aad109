"""Muting a post's like notifications (its author only).

While a post is muted, its likes are still recorded (the notification sink's actor
ledger) but its notification does not change; after the mute is lifted, they are counted
in the aggregate, without a notification of their own, at its first update (the post's
next like, or one the rate limit held back). Both routes are idempotent:
muting a muted post keeps the first ``muted_at``; unmuting an unmuted post is a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from ingest_api.auth import Principal
from ingest_api.db import connection
from ingest_api.deps import Caller, PostId, State
from ingest_api.openapi import problem_responses
from ingest_api.problems import ProblemError

router = APIRouter(prefix="/v1", tags=["notifications"])

MutedAt = Annotated[
    datetime | None,
    PlainSerializer(lambda t: t.isoformat() if t is not None else None, return_type=str | None),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}),
]


class PostMute(BaseModel):
    """Whether a post's like notifications are muted.

    Declared here, not in :mod:`ingest_api.models`, so the document gets FastAPI's copy
    of its schema, whose numeric bounds would be floats: ``post_id`` states none (it is
    the path's id, which does).
    """

    post_id: int = Field(description="The post's id.")
    muted: bool = Field(description="Whether the post's like notifications are muted now.")
    muted_at: MutedAt = Field(description="Since when it is muted; null when it is not.")


_MUTE_SQL = """
WITH p AS (SELECT author_id, deleted_at FROM posts WHERE post_id = %(post)s),
ins AS (
    INSERT INTO post_mutes (post_id)
    SELECT %(post)s FROM p WHERE p.author_id = %(caller)s AND p.deleted_at IS NULL
    ON CONFLICT (post_id) DO NOTHING
    RETURNING muted_at)
SELECT p.author_id, p.deleted_at IS NOT NULL,
       coalesce((SELECT muted_at FROM ins),
                (SELECT muted_at FROM post_mutes WHERE post_id = %(post)s))
FROM p"""

_UNMUTE_SQL = """
WITH p AS (SELECT author_id, deleted_at FROM posts WHERE post_id = %(post)s),
gone AS (  -- a data-modifying WITH runs to completion whether read or not
    DELETE FROM post_mutes m USING p
    WHERE m.post_id = %(post)s AND p.author_id = %(caller)s AND p.deleted_at IS NULL
    RETURNING m.post_id)
SELECT p.author_id, p.deleted_at IS NOT NULL, NULL::timestamptz FROM p"""


async def _set_mute(state: State, caller: Principal, post_id: int, muted: bool) -> dict[str, Any]:
    async with connection(state.pool) as conn:
        cur = await conn.execute(
            _MUTE_SQL if muted else _UNMUTE_SQL, {"post": post_id, "caller": caller.user_id}
        )
        row = await cur.fetchone()
    if row is None:
        raise ProblemError(404, f"post {post_id} does not exist")
    author, deleted, muted_at = row
    if author != caller.user_id:
        raise ProblemError(403, "only the post's author can mute its notifications")
    if deleted:
        raise ProblemError(410, f"post {post_id} was deleted")
    return {"post_id": post_id, "muted": muted, "muted_at": muted_at}


@router.put(
    "/posts/{post_id}/mute",
    response_model=PostMute,
    responses=problem_responses(401, 403, 404, 410, 422, 503),
)
async def mute(state: State, caller: Caller, post_id: PostId) -> dict[str, Any]:
    """Stop like notifications for one of the caller's posts (idempotent)."""
    return await _set_mute(state, caller, post_id, True)


@router.delete(
    "/posts/{post_id}/mute",
    response_model=PostMute,
    responses=problem_responses(401, 403, 404, 410, 422, 503),
)
async def unmute(state: State, caller: Caller, post_id: PostId) -> dict[str, Any]:
    """Resume like notifications for one of the caller's posts (idempotent)."""
    return await _set_mute(state, caller, post_id, False)
