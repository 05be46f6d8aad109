"""Event models on the wire (contract section 5), frozen and validated at the edge.

``LikeEvent`` is the value of a ``likes.events`` message: one per committed edge state
change. ``HotPostEvent`` is the value of a ``likes.hot_posts`` message.
``HotEpisodeChange`` is the value of a message of the internal ``likes.hot_episodes``
topic (the counts flow to the analytics flow; not part of the contract).
``FlowStateRecord`` is a control record in ``likes.events`` written by ``likes backfill``
(``action: "FlowState"``, not an edge event; consumers of edge events skip it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

PositiveId = Annotated[int, Field(gt=0, le=2**63 - 1, strict=True)]
LikeAction = Literal["LikeCreated", "LikeRemoved"]
FLOW_STATE_ACTION = "FlowState"


def rfc3339(ts: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z`` suffix."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def like_event_sql(
    *,
    event_id: str,
    action: str,
    post_id: str,
    user_id: str,
    version: str,
    updated_at: str,
    idempotency_key: str,
    author_id: str,
) -> str:
    """The SQL expression building a :class:`LikeEvent` as the outbox's ``payload``
    (jsonb), from SQL expressions for each field: the one encoding every writer of the
    outbox uses (``occurred_at`` is :func:`rfc3339` of ``updated_at``)."""
    return f"""jsonb_build_object(
    'event_id', {event_id}, 'action', {action}, 'post_id', {post_id}, 'user_id', {user_id},
    'edge_version', {version},
    'occurred_at', to_char({updated_at} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'idempotency_key', {idempotency_key}, 'author_id', {author_id})"""


class LikeEvent(BaseModel):
    """One committed like/unlike of the edge ``(post_id, user_id)`` at ``edge_version``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID
    action: LikeAction
    post_id: PositiveId
    user_id: PositiveId
    edge_version: PositiveId
    occurred_at: AwareDatetime
    idempotency_key: str | None = None
    author_id: PositiveId | None = None

    @property
    def liked(self) -> bool:
        """The edge state this event leaves behind."""
        return self.action == "LikeCreated"

    @property
    def occurred_ms(self) -> int:
        """Event time in integer epoch milliseconds."""
        return int(self.occurred_at.timestamp() * 1000)

    @field_serializer("occurred_at")
    def _ser_ts(self, ts: datetime) -> str:
        return rfc3339(ts)


class HotPostEvent(BaseModel):
    """A post became hot (``state="hot"``) or cooled (``state="cooled"``)."""

    model_config = ConfigDict(frozen=True)

    post_id: PositiveId
    state: Literal["hot", "cooled"]
    rate: int = Field(ge=0, description="likes in the trailing detection window")
    window_seconds: int = Field(gt=0)
    became_hot_at: AwareDatetime
    at: AwareDatetime
    peak_rate: int = Field(ge=0)

    @field_serializer("became_hot_at", "at")
    def _ser_ts(self, ts: datetime) -> str:
        return rfc3339(ts)


class HotEpisodeChange(BaseModel):
    """A hot-post episode started (``hot``), reached a new rate (``update``) or ended
    (``cooled``), as the counts flow detected it; times are epoch milliseconds."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    post_id: PositiveId
    state: Literal["hot", "update", "cooled"]
    rate: int = Field(ge=0, strict=True)
    peak_rate: int = Field(ge=0, strict=True)
    became_hot_at_ms: int = Field(ge=0, strict=True)
    at_ms: int = Field(ge=0, strict=True)
    cooled_at_ms: int | None = Field(default=None, ge=0, strict=True)


class FlowStateRecord(BaseModel):
    """The edge store's truth for some posts, restricted to the edges of one Kafka
    partition, at this record's position in that partition: ``posts`` holds
    ``[post_id, liked edges, sum of versions]`` of the post's edges whose events land in
    ``partition`` (of ``partitions``). Every event of those edges before the record is
    included, none after (the backfill writes it through the outbox while holding off
    edge writes), so a flow that reaches it can set its own state for those posts to it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID
    action: Literal["FlowState"]
    partition: int = Field(ge=0, strict=True)
    partitions: int = Field(gt=0, strict=True)
    posts: list[tuple[PositiveId, Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]]
