"""Reference models of the fanout read models, and the sinks' semantics, for flow tests."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.records import NotificationUpdate, RecentLikers

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Pair = tuple[int, int]


def micros(occurred_at: str) -> int:
    """An event's ``occurred_at`` in exact integer microseconds."""
    return (datetime.fromisoformat(occurred_at) - _EPOCH) // timedelta(microseconds=1)


def newest_likers(events: list[dict[str, Any]], n: int = 20) -> dict[int, list[int]]:
    """Each post's ``n`` newest current likers (newest first) after ``events``, ordered
    as ``post_likes`` by ``(updated_at, version, user_id)`` descending; posts without
    likers are absent."""
    last: dict[Pair, tuple[int, bool, int]] = {}
    for ev in events:
        edge = (ev["post_id"], ev["user_id"])
        if edge not in last or ev["edge_version"] > last[edge][0]:
            last[edge] = (
                ev["edge_version"],
                ev["action"] == "LikeCreated",
                micros(ev["occurred_at"]),
            )
    ranked: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for (post, user), (version, liked, us) in last.items():
        if liked:
            ranked[post].append((us, version, user))
    return {p: [u for _, _, u in sorted(keys, reverse=True)[:n]] for p, keys in ranked.items()}


def apply_recent(
    records: list[RecentLikers], edge_store: dict[int, list[int]]
) -> dict[int, list[int]]:
    """What ``likes:recent:*`` ends with: per post the first record of the highest ``seq``
    (compare-and-set), an inexact one filled from ``edge_store``; empty lists absent."""
    best: dict[int, RecentLikers] = {}
    for r in records:
        if r.post_id not in best or r.seq > best[r.post_id].seq:
            best[r.post_id] = r
    out = {p: list(r.user_ids) if r.exact else edge_store.get(p, []) for p, r in best.items()}
    return {p: users for p, users in out.items() if users}


@dataclass
class NotificationStore:
    """The notification sink's semantics (no mutes): the actor ledger, and the aggregate
    as of each fold that added someone."""

    ledger: dict[Pair, set[int]] = field(default_factory=lambda: defaultdict(set))
    folded: dict[Pair, set[int]] = field(default_factory=lambda: defaultdict(set))
    row_updates: dict[Pair, int] = field(default_factory=lambda: defaultdict(int))

    def apply(self, updates: list[NotificationUpdate]) -> NotificationStore:
        for u in updates:
            pair = (u.recipient_id, u.post_id)
            self.ledger[pair] |= {a for a, _ in u.actors if a != u.recipient_id}
            fresh = self.ledger[pair] - self.folded[pair]
            if u.fold and fresh:
                self.folded[pair] |= fresh
                self.row_updates[pair] += 1
        return self

    def totals(self) -> dict[Pair, int]:
        return {pair: len(actors) for pair, actors in self.folded.items() if actors}


def notifying_actors(events: list[dict[str, Any]]) -> dict[Pair, set[int]]:
    """Every (author, post) -> users who ever liked the post, the author excepted."""
    out: dict[Pair, set[int]] = defaultdict(set)
    for ev in events:
        if ev["action"] == "LikeCreated" and ev["user_id"] != ev["author_id"]:
            out[(ev["author_id"], ev["post_id"])].add(ev["user_id"])
    return dict(out)
