"""The caller's like notifications, aggregated per post, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ingest_api import cursor
from ingest_api.db import connection
from ingest_api.deps import Caller, State

router = APIRouter(prefix="/v1", tags=["notifications"])

_SQL = """SELECT post_id, actor_ids, total_actors, updated_at FROM notifications
WHERE recipient_id = %s
  AND (%s::timestamptz IS NULL OR (updated_at, post_id) < (%s::timestamptz, %s::bigint))
ORDER BY updated_at DESC, post_id DESC LIMIT %s"""


@router.get("/notifications")
async def notifications(
    state: State,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor_: Annotated[str | None, Query(alias="cursor")] = None,
) -> dict[str, Any]:
    """Like notifications for posts the caller authored."""
    pos = cursor.decode(cursor_)
    ts, last = pos if pos else (None, None)
    async with connection(state.pool) as conn:
        rows = await (
            await conn.execute(_SQL, (caller.user_id, ts, ts, last, limit + 1))
        ).fetchall()
    page = rows[:limit]
    nxt = cursor.encode(page[-1][3], page[-1][0]) if len(rows) > limit else None
    return {
        "items": [
            {"post_id": p, "actor_ids": list(a), "total_actors": n, "updated_at": t.isoformat()}
            for p, a, n, t in page
        ],
        "next_cursor": nxt,
    }
