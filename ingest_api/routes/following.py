"""The follow graph: follow, unfollow, and list whom a user follows (the user themself only).

A follow is an edge in the edge store like a like is, but nothing downstream consumes
it: no outbox row, no event. Both mutations are idempotent by the primary key
``(follower_id, followee_id)``; ``changed`` says whether this request changed the edge.
A follow of or by an erased user (``erased_users``) is refused with 410.
``liked_by`` (``ingest_api.liked_by``) reads the graph on every like read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ingest_api import cursor
from ingest_api.auth import MAX_ID, Principal
from ingest_api.db import connection
from ingest_api.deps import Caller, Cursor, Limit, State, UserId
from ingest_api.models import FollowingPage, FollowState
from ingest_api.openapi import problem_responses
from ingest_api.problems import ProblemError

router = APIRouter(prefix="/v1", tags=["following"])
FolloweeId = Annotated[
    int, Path(gt=0, le=MAX_ID, description="positive 64-bit id of the user followed")
]
_MUTATION_RESPONSES = problem_responses(401, 403, 410, 422, 429, 503)

_FOLLOW_SQL = """
WITH er AS (SELECT EXISTS (SELECT 1 FROM erased_users WHERE user_id IN (%(f)s, %(e)s)) AS erased),
ins AS (
    INSERT INTO follows (follower_id, followee_id) SELECT %(f)s, %(e)s FROM er WHERE NOT erased
    ON CONFLICT (follower_id, followee_id) DO NOTHING RETURNING 1)
SELECT (SELECT erased FROM er), EXISTS (SELECT 1 FROM ins)"""
_UNFOLLOW_SQL = """
WITH d AS (DELETE FROM follows WHERE follower_id = %(f)s AND followee_id = %(e)s RETURNING 1)
SELECT false, EXISTS (SELECT 1 FROM d)"""
_FOLLOWING_SQL = """SELECT followee_id, created_at FROM follows
WHERE follower_id = %s
  AND (%s::timestamptz IS NULL OR (created_at, followee_id) < (%s::timestamptz, %s::bigint))
ORDER BY created_at DESC, followee_id DESC LIMIT %s"""


def _only_themself(caller: Principal, user_id: int) -> None:
    if user_id != caller.user_id:
        raise ProblemError(403, "a user's follows are managed and seen by that user only")


async def _mutate(
    state: State, caller: Principal, user_id: int, followee_id: int, follow: bool
) -> dict[str, Any]:
    _only_themself(caller, user_id)
    if followee_id == user_id:
        raise ProblemError(422, "a user cannot follow themself")
    await state.limiter.check(caller.user_id)
    async with connection(state.pool) as conn:
        sql = _FOLLOW_SQL if follow else _UNFOLLOW_SQL
        row = await (await conn.execute(sql, {"f": user_id, "e": followee_id})).fetchone()
    erased, changed = row if row else (False, False)
    if erased:
        raise ProblemError(410, "an erased user cannot follow or be followed")
    return {
        "user_id": user_id,
        "followee_id": followee_id,
        "following": follow,
        "changed": bool(changed),
    }


@router.put(
    "/users/{user_id}/following/{followee_id}",
    response_model=FollowState,
    responses=_MUTATION_RESPONSES,
)
async def follow(
    state: State, caller: Caller, user_id: UserId, followee_id: FolloweeId
) -> dict[str, Any]:
    """Follow a user (idempotent; only the user themself)."""
    return await _mutate(state, caller, user_id, followee_id, True)


@router.delete(
    "/users/{user_id}/following/{followee_id}",
    response_model=FollowState,
    responses=_MUTATION_RESPONSES,
)
async def unfollow(
    state: State, caller: Caller, user_id: UserId, followee_id: FolloweeId
) -> dict[str, Any]:
    """Stop following a user (idempotent; only the user themself)."""
    return await _mutate(state, caller, user_id, followee_id, False)


@router.get(
    "/users/{user_id}/following",
    response_model=FollowingPage,
    responses=problem_responses(401, 403, 422, 503),
)
async def following(
    state: State, caller: Caller, user_id: UserId, limit: Limit = 20, cursor_: Cursor = None
) -> dict[str, Any]:
    """Users the user follows, most recently followed first (only the user themself)."""
    _only_themself(caller, user_id)
    async with connection(state.pool) as conn:
        page, nxt = await cursor.keyset_page(conn, _FOLLOWING_SQL, user_id, limit, cursor_, 1, 0)
    return {
        "items": [{"user_id": u, "followed_at": t} for u, t in page],
        "next_cursor": nxt,
    }
