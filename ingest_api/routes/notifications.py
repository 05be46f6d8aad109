"""The caller's like notifications, aggregated per post, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ingest_api import cursor
from ingest_api.db import connection
from ingest_api.deps import Caller, Cursor, Limit, State
from ingest_api.models import NotificationsPage
from ingest_api.openapi import problem_responses

router = APIRouter(prefix="/v1", tags=["notifications"])

_SQL = """SELECT post_id, actor_ids, total_actors, updated_at FROM notifications
WHERE recipient_id = %s
  AND (%s::timestamptz IS NULL OR (updated_at, post_id) < (%s::timestamptz, %s::bigint))
ORDER BY updated_at DESC, post_id DESC LIMIT %s"""


@router.get(
    "/notifications",
    response_model=NotificationsPage,
    responses=problem_responses(401, 422, 503),
)
async def notifications(
    state: State, caller: Caller, limit: Limit = 20, cursor_: Cursor = None
) -> dict[str, Any]:
    """Like notifications for posts the caller authored."""
    async with connection(state.pool) as conn:
        page, nxt = await cursor.keyset_page(conn, _SQL, caller.user_id, limit, cursor_, 3, 0)
    return {
        "items": [
            {"post_id": p, "actor_ids": list(a), "total_actors": n, "updated_at": t}
            for p, a, n, t in page
        ],
        "next_cursor": nxt,
    }
