"""Records that travel between flow stages and into sinks: small, frozen, picklable."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, TypeVar
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Accepted:
    """An edge transition that survived dedupe, with its effect on the post's count.

    ``delta`` is the change of the post's like count (+1, -1, or 0 after a gap);
    ``seq_inc`` how far the edge's version advanced (the post's ``seq`` grows by it).
    """

    post_id: int
    user_id: int
    version: int
    delta: int
    seq_inc: int
    occurred_ms: int
    event_id: UUID
    action: str
    author_id: int | None


@dataclass(frozen=True, slots=True)
class Adoption:
    """A post's count and ``seq`` moved by a backfill's flow-state record: the difference
    between the edge store's truth and what one partition's events had contributed, at
    the record's position. The counts it leads to are written over any stored value
    (``CountUpdate.forced``), since a ``seq`` the flow inflated must come down."""

    post_id: int
    delta: int
    seq_inc: int


@dataclass(frozen=True, slots=True)
class WindowPart:
    """One Kafka partition's share of a post's tumbling window, as absolute values.

    ``part`` is ``p<partition>`` for on-time events, ``late:<event_id>`` for a correction.
    ``version`` (= likes + unlikes) grows with every event, so the newest write wins.
    """

    post_id: int
    window_start_ms: int
    window_end_ms: int
    part: str
    likes: int
    unlikes: int
    version: int


@dataclass(frozen=True, slots=True)
class StageOutput:
    """What the partition stage emits per batch: one item, so downstream steps run per
    batch rather than per event."""

    accepted: list[Accepted]
    windows: list[WindowPart]
    adopted: list[Adoption] = field(default_factory=list)
    counted: list[tuple[int, int, int, int]] = field(default_factory=list)
    """Accepted transitions as ``(post_id, delta, seq_inc, occurred_ms)`` only, from a
    stage asked for no :class:`Accepted` records (the counts flow needs no more)."""


@dataclass(frozen=True, slots=True)
class CountUpdate:
    """A post's absolute like count at ``seq`` (the sum of edge versions it reflects).

    ``newest_ms`` is the newest ``occurred_at`` (outbox commit time, epoch ms) of the
    events that moved the count to this value, 0 when unknown; the Redis sink measures
    freshness from it. ``forced``: the counts flow adopted a backfill's truth for the
    post, so sinks write this value whatever ``seq`` they hold (it may be lower than a
    ``seq`` the flow had inflated). Neither is part of the value: equality ignores them.
    """

    post_id: int
    count: int
    seq: int
    newest_ms: int = field(default=0, compare=False)
    forced: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class HotChange:
    """A hot-post episode: started, updated (peak), or ended (``cooled_at_ms`` set)."""

    post_id: int
    state: str  # "hot" | "cooled" | "update"
    rate: int
    peak_rate: int
    became_hot_at_ms: int
    at_ms: int
    cooled_at_ms: int | None

    @property
    def version(self) -> int:
        """Monotone within an episode: peaks only grow, and cooling comes last."""
        return self.peak_rate + (1 << 40 if self.cooled_at_ms is not None else 0)


TrendOut = tuple[int, float | None]
"""A post's trending score, or ``(post, None)`` when the post is forgotten."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a flow could not process: its original bytes and why."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str


class _PostValue(Protocol):
    """A per-post value at a ``seq`` that a backfill's adoption may force."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def post_id(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def forced(self) -> bool: ...


V = TypeVar("V", bound=_PostValue)


def latest_per_post(updates: list[V]) -> list[V]:
    """The value each post ends with, sorted by post: the highest ``seq``, or, from a
    forced value on, the last one in order, still forced (``updates`` are in the order
    the flow emitted them, and its ``seq`` only grows after it adopted a value). For
    counts (:class:`CountUpdate`) and recent-likers lists (:class:`RecentLikers`)."""
    best: dict[int, V] = {}
    for u in updates:
        cur = best.get(u.post_id)
        if cur is not None and cur.forced and not u.forced:
            best[u.post_id] = replace(u, forced=True)
        elif cur is None or u.forced or u.seq > cur.seq:
            best[u.post_id] = u
    return [best[p] for p in sorted(best)]


@dataclass(frozen=True, slots=True)
class LikerChange:
    """An accepted edge transition as the recent-likers stage needs it.

    ``occurred_us`` is the event time in exact integer microseconds (the edge's
    ``updated_at`` in the edge store), so the stage orders likers exactly as
    ``post_likes`` does; ``seq_inc`` is :attr:`Accepted.seq_inc`.
    """

    post_id: int
    user_id: int
    version: int
    liked: bool
    occurred_us: int
    seq_inc: int


@dataclass(frozen=True, slots=True)
class RecentLikers:
    """A post's most recent current likers, newest first, at ``seq``.

    ``seq`` is the sum of the edge-version increments the stage has applied for the post
    (monotone, the same for the same events whatever the batching). ``exact`` is False
    when the stage cannot know the list (older likers it no longer holds may belong in
    it): the sink then reads the list from the edge store instead of ``user_ids``.
    ``forced``: the stage adopted a backfill's ``seq`` for the post, so the sink writes
    the list whatever ``seq`` it holds (as ``CountUpdate.forced``).
    """

    post_id: int
    user_ids: tuple[int, ...]
    seq: int
    exact: bool
    forced: bool = False


@dataclass(frozen=True, slots=True)
class NotificationUpdate:
    """New likers of one post for its author's notification, and whether to fold.

    ``actors`` (``(actor_id, liked_ms)`` pairs) go into the actor ledger whatever
    ``fold`` says; ``fold`` asks the sink to bring the aggregate up to date with every
    ledger actor not yet in it (the flow asks at most once per interval per
    (recipient, post), which is what limits the update rate).
    """

    recipient_id: int
    post_id: int
    actors: tuple[tuple[int, int], ...]
    fold: bool
