"""What one Kafka partition's events have contributed to each post, and the corrections
a backfill's flow-state records make to it (:class:`~flows.decode.FlowState`).

Guarantee: a stage that feeds every accepted transition to :meth:`Contributions.add`
and every flow-state record to :meth:`Contributions.adopt`, in partition order, gets for
each post in the record the :class:`~core.records.Adoption` that moves what the
partition contributed (count and ``seq``) to the edge store's truth at the record's
position; it then holds that truth. Since the record sits after every event it includes
and before every event it does not, a downstream per-post state that adds transitions
and adoptions alike becomes exact at that point, whatever it had drifted to (a
duplicate after the dedupe TTL, a lost recovery store). A redelivered record changes
nothing: applied records are remembered by id for as long as edges are (the dedupe TTL).
A stage resumed from state saved before contributions were kept cannot know what to
correct, so it ignores records until it starts from fresh state (README: lost recovery
store), and says so once.
"""

from __future__ import annotations

import logging

from core.records import Adoption
from flows.decode import FlowState

log = logging.getLogger(__name__)
# a post's contribution packed in one int: seq << 32 | (count + _OFFSET)
_OFFSET = 1 << 31
_LOW = (1 << 32) - 1
Saved = tuple[dict[int, int] | None, dict[int, int]]  # contributions, applied records


def _pack(count: int, seq: int) -> int:
    return (seq << 32) + count + _OFFSET


def _unpack(packed: int) -> tuple[int, int]:
    return (packed & _LOW) - _OFFSET, packed >> 32


class Contributions:
    """Per post, the count and ``seq`` this partition's events contributed since the
    stage's state began; and the records already applied (id -> event time)."""

    def __init__(self, saved: Saved | None, *, fresh: bool, label: str) -> None:
        """``saved``: from :meth:`snapshot`; ``fresh``: the stage starts without state
        (so it has seen every event it will count); ``label`` names it in the log."""
        had, applied = saved if saved is not None else (None, {})
        self.posts: dict[int, int] | None = dict(had) if had is not None else None
        if fresh:
            self.posts = {}
        elif self.posts is None:
            log.warning(
                "%s: flow state predates flow-state records; they are ignored until "
                "the flow starts from fresh state (README: lost recovery store)",
                label,
            )
        self.applied: dict[int, int] = dict(applied)

    def add(self, post_id: int, delta: int, seq_inc: int) -> None:
        """One accepted transition of the partition."""
        if self.posts is not None:
            self.posts[post_id] = self.posts.get(post_id, _OFFSET) + (seq_inc << 32) + delta

    def adopt(self, record: FlowState, now_ms: int) -> list[Adoption]:
        """The corrections ``record`` makes (none when redelivered or not kept);
        ``now_ms``: the partition's event time, for forgetting the record later."""
        posts = self.posts
        if posts is None or record.record_id in self.applied:
            return []
        self.applied[record.record_id] = now_ms
        out = []
        for post_id, count, seq in record.posts:
            have_count, have_seq = _unpack(posts.get(post_id, _OFFSET))
            if (have_count, have_seq) != (count, seq):
                out.append(Adoption(post_id, count - have_count, seq - have_seq))
                posts[post_id] = _pack(count, seq)
        return out

    def forget_records(self, cutoff_ms: int) -> None:
        """Forget records applied before event time ``cutoff_ms``."""
        for rid in [r for r, ms in self.applied.items() if ms < cutoff_ms]:
            del self.applied[rid]

    def snapshot(self) -> Saved:
        """A copy that later mutation cannot alias."""
        return (dict(self.posts) if self.posts is not None else None), dict(self.applied)
