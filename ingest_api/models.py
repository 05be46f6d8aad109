"""Request and response bodies of the HTTP API (what the OpenAPI document describes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer, WithJsonSchema

from ingest_api import cursor
from ingest_api.auth import MAX_ID

Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda t: t.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
PostIdField = Annotated[int, Field(gt=0, le=MAX_ID, description="The post's id.")]
UserIdField = Annotated[int, Field(gt=0, le=MAX_ID, description="The user's id.")]
NextCursor = Annotated[
    str | None,
    Field(
        pattern=cursor.PATTERN,
        max_length=cursor.MAX_LENGTH,
        description="Pass as `cursor` to get the next page; null on the last page.",
    ),
]


class Health(BaseModel):
    """The process is alive."""

    status: Literal["ok"] = Field(description="Always `ok`.")


class Readiness(BaseModel):
    """Whether the API can serve requests."""

    status: Literal["ok", "unavailable"] = Field(description="`ok` when ready.")
    postgres: bool = Field(description="Whether the edge store answered.")


class LikeState(BaseModel):
    """The caller's like of a post after a like or unlike."""

    post_id: PostIdField
    user_id: UserIdField = Field(description="The caller.")
    liked: bool = Field(description="Whether the caller now likes the post.")
    changed: bool = Field(description="False when the edge already was in this state.")
    version: int = Field(description="The edge's version; bumped on every real change.")


class PostLikes(BaseModel):
    """A post's like count, the caller's state, and who the caller follows likes it."""

    post_id: PostIdField
    like_count: int = Field(description="Likes of the post (eventually consistent).")
    viewer_liked: bool = Field(description="Whether the caller likes it (read-your-writes).")
    liked_by: list[UserIdField] = Field(
        max_length=3,
        description="Up to 3 users the caller follows who currently like the post, most "
        'recent like first ("liked by A, B and N others"). Always a prefix of the exact '
        "answer; it can be shorter when a viral post meets a large follow list in a "
        "crowded batch (the cost of a read is bounded).",
    )


class LikesBatch(BaseModel):
    """Like counts, viewer state and `liked_by` of many posts."""

    items: list[PostLikes] = Field(description="One per requested id, in request order.")


class Liker(BaseModel):
    """A user who likes a post."""

    user_id: UserIdField
    liked_at: Timestamp = Field(description="When the user liked the post.")


class LikersPage(BaseModel):
    """A page of a post's likers, most recent first."""

    items: list[Liker] = Field(description="At most `limit` likers.")
    next_cursor: NextCursor


class UserLike(BaseModel):
    """A post the user likes."""

    post_id: PostIdField
    liked_at: Timestamp = Field(description="When the user liked the post.")


class UserLikesPage(BaseModel):
    """A page of the posts a user likes, most recent first."""

    items: list[UserLike] = Field(description="At most `limit` posts.")
    next_cursor: NextCursor


class FollowState(BaseModel):
    """Whether a user follows another, after a follow or unfollow."""

    user_id: UserIdField = Field(description="The follower: the caller.")
    followee_id: UserIdField = Field(description="The user followed or unfollowed.")
    following: bool = Field(description="Whether the user now follows the followee.")
    changed: bool = Field(description="False when the edge already was in this state.")


class Followee(BaseModel):
    """A user the caller follows."""

    user_id: UserIdField
    followed_at: Timestamp = Field(description="When the caller followed the user.")


class FollowingPage(BaseModel):
    """A page of the users a user follows, most recently followed first."""

    items: list[Followee] = Field(description="At most `limit` users.")
    next_cursor: NextCursor


class Notification(BaseModel):
    """Likes of one of the caller's posts, aggregated."""

    post_id: PostIdField
    actor_ids: list[int] = Field(description="The most recent likers.")
    total_actors: int = Field(description="How many users liked the post in all.")
    updated_at: Timestamp = Field(description="When the notification last changed.")


class NotificationsPage(BaseModel):
    """A page of the caller's notifications, newest first."""

    items: list[Notification] = Field(description="At most `limit` notifications.")
    next_cursor: NextCursor


def _whole_number(value: object) -> object:
    """JSON Schema's integers include ``7.0``; strings and booleans stay rejected."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class PostIn(BaseModel):
    """A post to register."""

    author_id: Annotated[int, BeforeValidator(_whole_number)] = Field(
        gt=0, le=MAX_ID, strict=True, description="The post's author."
    )


class Post(BaseModel):
    """A registered post."""

    post_id: PostIdField
    author_id: UserIdField = Field(description="The post's author.")
    created_at: Timestamp = Field(description="When the post was registered.")
    deleted_at: None = Field(description="Always null: a deleted post is 410.")


class DeletedPost(BaseModel):
    """A post marked deleted."""

    post_id: PostIdField
    author_id: UserIdField = Field(description="The post's author.")
    deleted_at: Timestamp = Field(description="When the post was first deleted.")


class ErasureJob(BaseModel):
    """An erasure of a user's likes and of their id from every projection."""

    job_id: str = Field(description="The job's id (a UUID).")
    user_id: UserIdField = Field(description="The erased user.")
    status: Literal["pending", "running", "done", "failed"] = Field(
        description="`done` once nothing of the user remains; `failed` jobs are retried."
    )
    attempts: int = Field(ge=0, description="Runs of the job so far.")
    progress: dict[str, dict[str, int | bool | str]] = Field(
        description="One entry per projection or store step: what was removed, what remains."
    )
    error: str | None = Field(description="Why the last run failed, if it did.")
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
