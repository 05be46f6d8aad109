"""Like, unlike, and the reads feeds make: counts, viewer state, likers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ingest_api import cursor, idempotency
from ingest_api.counts import like_counts
from ingest_api.db import connection
from ingest_api.deps import Caller, PostId, State, parse_id_list
from ingest_api.likes_tx import LikeResult, set_like
from ingest_api.metrics import LIKE_TRANSITIONS
from ingest_api.problems import ProblemError

router = APIRouter(prefix="/v1", tags=["likes"])
MAX_BATCH = 100


class LikeState(BaseModel):
    post_id: int
    user_id: int
    liked: bool
    changed: bool
    version: int


class PostLikes(BaseModel):
    post_id: int
    like_count: int
    viewer_liked: bool


class LikesBatch(BaseModel):
    items: list[PostLikes]


async def _mutate(request: Request, state: State, caller: Caller, post_id: int, liked: bool) -> Any:
    await state.limiter.check(caller.user_id)
    key = request.headers.get("Idempotency-Key")
    s = state.settings
    async with connection(state.pool) as conn:
        if key is not None:
            idempotency.validate_key(key)
            fp = idempotency.fingerprint(request.method, request.url.path)
            replay = await idempotency.claim(
                conn,
                user_id=caller.user_id,
                key=key,
                fp=fp,
                stale_s=s.idempotency_stale_s,
                ttl_h=s.idempotency_ttl_h,
            )
            if replay is not None:
                return JSONResponse(
                    replay.body,
                    status_code=replay.status_code,
                    headers={"Idempotent-Replayed": "true"},
                )
        try:
            result: LikeResult = await set_like(
                conn, post_id=post_id, user_id=caller.user_id, liked=liked, idem_key=key
            )
        except BaseException:
            if key is not None and not conn.broken:
                await idempotency.release(conn, user_id=caller.user_id, key=key)
            raise
    await state.viewer.put_many(caller.user_id, {post_id: liked})
    LIKE_TRANSITIONS.labels(
        action="like" if liked else "unlike", changed=str(result.changed).lower()
    ).inc()
    return JSONResponse(result.body())


@router.post("/posts/{post_id}/like", response_model=LikeState)
async def like(request: Request, state: State, caller: Caller, post_id: PostId) -> Any:
    """Like a post (idempotent)."""
    return await _mutate(request, state, caller, post_id, True)


@router.delete("/posts/{post_id}/like", response_model=LikeState)
async def unlike(request: Request, state: State, caller: Caller, post_id: PostId) -> Any:
    """Unlike a post (idempotent)."""
    return await _mutate(request, state, caller, post_id, False)


_VIEWER_SQL = """SELECT p.deleted_at IS NOT NULL, coalesce(e.state = 'liked', false)
FROM posts p LEFT JOIN post_likes e ON e.post_id = p.post_id AND e.user_id = %s
WHERE p.post_id = %s"""


@router.get("/posts/{post_id}/likes", response_model=PostLikes)
async def post_likes(state: State, caller: Caller, post_id: PostId) -> dict[str, Any]:
    """A post's like count and whether the caller likes it."""
    async with connection(state.pool) as conn:
        row = await (await conn.execute(_VIEWER_SQL, (caller.user_id, post_id))).fetchone()
        if row is None:
            raise ProblemError(404, f"post {post_id} does not exist")
        counts = await like_counts(state.redis, conn, [post_id])
    return {"post_id": post_id, "like_count": counts[post_id], "viewer_liked": bool(row[1])}


_BATCH_VIEWER_SQL = """SELECT post_id, state = 'liked' FROM post_likes
WHERE user_id = %s AND post_id = ANY(%s)"""


@router.get("/likes", response_model=LikesBatch)
async def likes_batch(
    state: State,
    caller: Caller,
    post_ids: Annotated[str, Query(description="comma-separated, at most 100")],
) -> dict[str, Any]:
    """Feed batch read: counts and viewer state for many posts, in request order."""
    ids = parse_id_list(post_ids, limit=MAX_BATCH)
    viewer = await state.viewer.get_many(caller.user_id, ids)
    missing = [p for p in dict.fromkeys(ids) if p not in viewer]
    async with connection(state.pool) as conn:
        if missing:
            cur = await conn.execute(_BATCH_VIEWER_SQL, (caller.user_id, missing))
            found = {int(p): bool(v) for p, v in await cur.fetchall()}
            fetched = {p: found.get(p, False) for p in missing}
            await state.viewer.put_many(caller.user_id, fetched)
            viewer.update(fetched)
        counts = await like_counts(state.redis, conn, ids)
    return {
        "items": [{"post_id": p, "like_count": counts[p], "viewer_liked": viewer[p]} for p in ids]
    }


_LIKERS_SQL = """SELECT user_id, updated_at FROM post_likes
WHERE post_id = %s AND state = 'liked'
  AND (%s::timestamptz IS NULL OR (updated_at, user_id) < (%s::timestamptz, %s::bigint))
ORDER BY updated_at DESC, user_id DESC LIMIT %s"""


@router.get("/posts/{post_id}/likers")
async def likers(
    state: State,
    caller: Caller,
    post_id: PostId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor_: Annotated[str | None, Query(alias="cursor")] = None,
) -> dict[str, Any]:
    """Users who like a post, most recent first, keyset-paginated."""
    async with connection(state.pool) as conn:
        exists = await (
            await conn.execute("SELECT 1 FROM posts WHERE post_id = %s", (post_id,))
        ).fetchone()
        if not exists:
            raise ProblemError(404, f"post {post_id} does not exist")
        page, nxt = await cursor.keyset_page(conn, _LIKERS_SQL, post_id, limit, cursor_, 1, 0)
    return {
        "items": [{"user_id": u, "liked_at": t.isoformat()} for u, t in page],
        "next_cursor": nxt,
    }
