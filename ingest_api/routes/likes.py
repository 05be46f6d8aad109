"""Like, unlike, and the reads feeds make: counts, viewer state, `liked_by`, likers."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query, Request, Response

from ingest_api import cursor, idempotency
from ingest_api.auth import MAX_ID, Principal
from ingest_api.counts import like_counts
from ingest_api.db import connection
from ingest_api.deps import (
    AppState,
    Caller,
    Cursor,
    IdempotencyKey,
    Limit,
    PostId,
    State,
    parse_id_list,
)
from ingest_api.liked_by import liked_by
from ingest_api.likes_tx import LikeResult, set_like
from ingest_api.metrics import LIKE_TRANSITIONS, OUTBOX_WRITE_ERRORS
from ingest_api.models import LikersPage, LikesBatch, LikeState, PostLikes
from ingest_api.openapi import problem_responses
from ingest_api.problems import ProblemError

router = APIRouter(prefix="/v1", tags=["likes"])
MAX_BATCH = 100
REPLAYED = idempotency.REPLAYED

_MUTATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The edge after the request, or the first response replayed.",
        "headers": {
            REPLAYED: {
                "description": "`true` when this is the stored response to an earlier "
                "request with the same Idempotency-Key.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    **problem_responses(401, 404, 409, 410, 422, 429, 503),
}
# ?post_ids=1,2,3: an array sent comma-separated (form style, not exploded); FastAPI
# reads it as one string (hidden parameter below) and parse_id_list enforces this
_POST_IDS = {
    "name": "post_ids",
    "in": "query",
    "required": True,
    "style": "form",
    "explode": False,
    "description": f"Comma-separated post ids, 1..{MAX_BATCH} of them (repeats allowed).",
    "schema": {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_BATCH,
        "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    },
}


async def _transition(
    state: AppState,
    user_id: int,
    post_id: int,
    liked: bool,
    key: str | None,
    token: uuid.UUID,
) -> LikeResult:
    """The like statement, through the group committer or alone on a connection; the
    result is in the viewer cache (or the user marked stale) when this returns."""
    if state.writer is not None:  # its batches go to the viewer cache (app.py)
        return await state.writer.set_like(
            post_id=post_id, user_id=user_id, liked=liked, idem_key=key, claim_token=token
        )
    async with connection(state.pool) as conn:
        result = await set_like(
            conn, post_id=post_id, user_id=user_id, liked=liked, idem_key=key, claim_token=token
        )
    await state.viewer.put_many(user_id, {post_id: (result.version, result.liked)}, committed=True)
    return result


def _refused(error: BaseException) -> bool:
    """Whether the statement certainly did not commit the request (it was refused, or
    failed on its own data): only then is its idempotency key freed for a retry. After a
    lost connection or a cancelled request the outcome is unknown, and the claimed key
    makes a retry wait (409) until the record is completed or goes stale."""
    if isinstance(error, ProblemError):
        return error.status < 500
    return isinstance(error, psycopg.Error) and not isinstance(error, psycopg.OperationalError)


async def _release(state: AppState, user_id: int, key: str, token: uuid.UUID) -> None:
    """Free the idempotency key of a request that failed, if its claim is still this
    request's (best effort: a key left claimed is released by its staleness rule)."""
    try:
        async with connection(state.pool) as conn:
            await idempotency.release(conn, user_id=user_id, key=key, token=token)
    except ProblemError:
        pass


@dataclass(frozen=True)
class Mutation:
    """A like/unlike request's answer: the edge after it, or the first answer replayed."""

    status: int
    body: dict[str, Any]
    replayed: bool


async def _admit(
    state: AppState, user_id: int, *, method: str, path: str, key: str | None, token: uuid.UUID
) -> Mutation | None:
    """The checks before a transition: the rate limit, then the Idempotency-Key's claim
    (its first answer, if this request repeats one that was answered)."""
    await state.limiter.check(user_id)
    if key is None:
        return None
    s = state.settings
    idempotency.validate_key(key)
    fp = idempotency.fingerprint(method, path)
    async with connection(state.pool) as conn:
        replay = await idempotency.claim(
            conn,
            user_id=user_id,
            key=key,
            fp=fp,
            stale_s=s.idempotency_stale_s,
            ttl_h=s.idempotency_ttl_h,
            token=token,
        )
    return None if replay is None else Mutation(replay.status_code, replay.body, replayed=True)


async def mutate(
    state: AppState,
    user_id: int,
    *,
    method: str,
    path: str,
    post_id: int,
    key: str | None,
    liked: bool,
) -> Mutation:
    """Like or unlike ``post_id`` for ``user_id`` (rate limit, Idempotency-Key claim,
    the transition): the one implementation behind both the documented FastAPI routes
    and :mod:`ingest_api.routes.like_fast`. Errors are :class:`ProblemError`."""
    token = uuid.uuid4()  # this request's claim of its Idempotency-Key, if it has one
    # on its way to the group committer, whose batch may wait for it (``arriving``)
    with state.writer.arriving() if state.writer is not None else contextlib.nullcontext():
        replay = await _admit(state, user_id, method=method, path=path, key=key, token=token)
    if replay is not None:
        return replay
    try:
        result: LikeResult = await _transition(state, user_id, post_id, liked, key, token)
    except BaseException as e:
        if not isinstance(e, ProblemError) or e.status >= 500:  # the store failed
            OUTBOX_WRITE_ERRORS.inc()
        if _refused(e):
            if key is not None:
                await _release(state, user_id, key, token)
        else:  # it may have committed: the cached state may be the old one
            await state.viewer.forget(user_id, post_id)
        raise
    LIKE_TRANSITIONS.labels(
        action="like" if liked else "unlike", changed=str(result.changed).lower()
    ).inc()
    return Mutation(200, result.body(), replayed=False)


async def _mutate(
    request: Request,
    response: Response,
    state: AppState,
    caller: Principal,
    post_id: int,
    key: str | None,
    liked: bool,
) -> dict[str, Any]:
    done = await mutate(
        state,
        caller.user_id,
        method=request.method,
        path=request.url.path,
        post_id=post_id,
        key=key,
        liked=liked,
    )
    response.status_code = done.status
    if done.replayed:
        response.headers[REPLAYED] = "true"
    return done.body


@router.post("/posts/{post_id}/like", response_model=LikeState, responses=_MUTATION_RESPONSES)
async def like(
    request: Request,
    response: Response,
    state: State,
    caller: Caller,
    post_id: PostId,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Like a post (idempotent)."""
    return await _mutate(request, response, state, caller, post_id, idempotency_key, True)


@router.delete("/posts/{post_id}/like", response_model=LikeState, responses=_MUTATION_RESPONSES)
async def unlike(
    request: Request,
    response: Response,
    state: State,
    caller: Caller,
    post_id: PostId,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Unlike a post (idempotent)."""
    return await _mutate(request, response, state, caller, post_id, idempotency_key, False)


_VIEWER_SQL = """SELECT p.deleted_at IS NOT NULL, coalesce(e.state = 'liked', false)
FROM posts p LEFT JOIN post_likes e ON e.post_id = p.post_id AND e.user_id = %s
WHERE p.post_id = %s"""


@router.get(
    "/posts/{post_id}/likes",
    response_model=PostLikes,
    responses=problem_responses(401, 404, 422, 503),
)
async def post_likes(state: State, caller: Caller, post_id: PostId) -> dict[str, Any]:
    """A post's like count, whether the caller likes it, and who they follow likes it."""
    async with connection(state.pool) as conn:
        row = await (await conn.execute(_VIEWER_SQL, (caller.user_id, post_id))).fetchone()
        if row is None:
            raise ProblemError(404, f"post {post_id} does not exist")
        counts = await like_counts(state.redis, conn, [post_id], state.counts)
        friends = await liked_by(conn, caller.user_id, counts, state.settings.liked_by_budget)
    return {
        "post_id": post_id,
        "like_count": counts[post_id],
        "viewer_liked": bool(row[1]),
        "liked_by": friends[post_id],
    }


_BATCH_VIEWER_SQL = """SELECT post_id, state = 'liked', version FROM post_likes
WHERE user_id = %s AND post_id = ANY(%s)"""


@router.get(
    "/likes",
    response_model=LikesBatch,
    responses=problem_responses(401, 422, 503),
    openapi_extra={"parameters": [_POST_IDS]},
)
async def likes_batch(
    state: State,
    caller: Caller,
    post_ids: Annotated[str, Query(include_in_schema=False)],
) -> dict[str, Any]:
    """Feed batch read: counts, viewer state and `liked_by` of many posts, in request order."""
    ids = parse_id_list(post_ids, limit=MAX_BATCH)
    async with connection(state.pool) as conn:
        viewer = await state.viewer.get_many(conn, caller.user_id, ids)
        missing = [p for p in dict.fromkeys(ids) if p not in viewer]
        if missing:
            cur = await conn.execute(_BATCH_VIEWER_SQL, (caller.user_id, missing))
            found = {int(p): (int(n), bool(v)) for p, v, n in await cur.fetchall()}
            fetched = {p: found.get(p, (0, False)) for p in missing}
            await state.viewer.put_many(caller.user_id, fetched)
            viewer.update({p: liked for p, (_, liked) in fetched.items()})
        counts = await like_counts(state.redis, conn, ids, state.counts)
        friends = await liked_by(conn, caller.user_id, counts, state.settings.liked_by_budget)
    return {
        "items": [
            {
                "post_id": p,
                "like_count": counts[p],
                "viewer_liked": viewer[p],
                "liked_by": friends[p],
            }
            for p in ids
        ]
    }


_LIKERS_SQL = """SELECT user_id, updated_at FROM post_likes
WHERE post_id = %s AND state = 'liked'
  AND (%s::timestamptz IS NULL OR (updated_at, user_id) < (%s::timestamptz, %s::bigint))
ORDER BY updated_at DESC, user_id DESC LIMIT %s"""


@router.get(
    "/posts/{post_id}/likers",
    response_model=LikersPage,
    responses=problem_responses(401, 404, 422, 503),
)
async def likers(
    state: State, caller: Caller, post_id: PostId, limit: Limit = 20, cursor_: Cursor = None
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
        "items": [{"user_id": u, "liked_at": t} for u, t in page],
        "next_cursor": nxt,
    }
