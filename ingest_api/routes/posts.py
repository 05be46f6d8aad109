"""Post registration (scope ``posts:write``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from ingest_api.auth import Principal
from ingest_api.db import connection
from ingest_api.deps import PostId, State, require_scope
from ingest_api.models import DeletedPost, Post, PostIn
from ingest_api.openapi import problem_responses
from ingest_api.problems import ProblemError

router = APIRouter(prefix="/v1", tags=["posts"])
Writer = Annotated[Principal, require_scope("posts:write")]

_INSERT = """INSERT INTO posts (post_id, author_id) VALUES (%s, %s)
ON CONFLICT (post_id) DO NOTHING RETURNING author_id, created_at, deleted_at"""
_SELECT = "SELECT author_id, created_at, deleted_at FROM posts WHERE post_id = %s"


@router.put(
    "/posts/{post_id}",
    response_model=Post,
    status_code=201,
    response_description="The post was registered now.",
    responses={
        200: {"model": Post, "description": "The post already was registered to this author."},
        **problem_responses(401, 403, 409, 410, 422, 503),
    },
)
async def register_post(
    state: State, writer: Writer, post_id: PostId, body: PostIn, response: Response
) -> dict[str, Any]:
    """Register a post so that it can be liked (idempotent)."""
    async with connection(state.pool) as conn:
        row = await (await conn.execute(_INSERT, (post_id, body.author_id))).fetchone()
        created = row is not None
        if row is None:
            row = await (await conn.execute(_SELECT, (post_id,))).fetchone()
    if row is None:  # registered and purged concurrently: let the client retry
        raise ProblemError(409, f"post {post_id} changed concurrently, retry")
    author, created_at, deleted_at = row
    if deleted_at is not None:
        raise ProblemError(410, f"post {post_id} was deleted")
    if author != body.author_id:
        raise ProblemError(409, f"post {post_id} is registered to another author")
    if not created:
        response.status_code = 200
    return {"post_id": post_id, "author_id": author, "created_at": created_at, "deleted_at": None}


@router.delete(
    "/posts/{post_id}",
    response_model=DeletedPost,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def delete_post(state: State, writer: Writer, post_id: PostId) -> dict[str, Any]:
    """Mark a post deleted; it can no longer be liked."""
    async with connection(state.pool) as conn:
        row = await (
            await conn.execute(
                "UPDATE posts SET deleted_at = coalesce(deleted_at, now()) WHERE post_id = %s "
                "RETURNING author_id, deleted_at",
                (post_id,),
            )
        ).fetchone()
    if row is None:
        raise ProblemError(404, f"post {post_id} does not exist")
    return {"post_id": post_id, "author_id": row[0], "deleted_at": row[1]}
