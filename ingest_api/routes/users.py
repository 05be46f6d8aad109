"""A user's own liked posts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ingest_api import cursor
from ingest_api.db import connection
from ingest_api.deps import Caller, Cursor, Limit, State, UserId
from ingest_api.models import UserLikesPage
from ingest_api.openapi import problem_responses
from ingest_api.problems import ProblemError

router = APIRouter(prefix="/v1", tags=["users"])

_USER_LIKES_SQL = """SELECT post_id, updated_at FROM post_likes
WHERE user_id = %s AND state = 'liked'
  AND (%s::timestamptz IS NULL OR (updated_at, post_id) < (%s::timestamptz, %s::bigint))
ORDER BY updated_at DESC, post_id DESC LIMIT %s"""


@router.get(
    "/users/{user_id}/likes",
    response_model=UserLikesPage,
    responses=problem_responses(401, 403, 422, 503),
)
async def user_likes(
    state: State, caller: Caller, user_id: UserId, limit: Limit = 20, cursor_: Cursor = None
) -> dict[str, Any]:
    """Posts the caller likes, most recent first (only the user themself)."""
    if user_id != caller.user_id:
        raise ProblemError(403, "a user's likes are visible to that user only")
    async with connection(state.pool) as conn:
        page, nxt = await cursor.keyset_page(conn, _USER_LIKES_SQL, user_id, limit, cursor_, 1, 0)
    return {
        "items": [{"post_id": p, "liked_at": t} for p, t in page],
        "next_cursor": nxt,
    }
