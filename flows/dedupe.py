"""Dedupe by edge version: the last applied version per edge, bounded by an idle TTL.

Guarantee: an event whose version is not above the last applied version of its edge is
dropped, as long as the edge was seen within ``ttl_ms`` of event time. An edge idle for
longer is forgotten (memory stays bounded); a duplicate of it arriving after that is
accepted again, and the drift it causes is the reconciliation job's to repair.
Eviction runs on event time only, so a replay makes the same decisions.
"""

from __future__ import annotations

from schemas.events import LikeEvent

_VERSION_BITS = 32
_VERSION_MASK = (1 << _VERSION_BITS) - 1


def edge_key(post_id: int, user_id: int) -> int:
    """One int per edge: ids are below 2**63, so this is collision-free."""
    return (post_id << 64) | user_id


def _pack(version: int, liked: bool, seen_s: int) -> int:
    return (seen_s << (_VERSION_BITS + 1)) | ((version & _VERSION_MASK) << 1) | int(liked)


class EdgeDeduper:
    """Per-edge ``(version, liked, last seen)`` packed in one int, for small memory."""

    def __init__(self, ttl_ms: int, snapshot: tuple[dict[int, int], int] | None = None) -> None:
        self.ttl_ms = ttl_ms
        self.edges: dict[int, int] = dict(snapshot[0]) if snapshot else {}
        self.max_ms: int = snapshot[1] if snapshot else 0
        self._swept_ms = self.max_ms

    def apply(self, ev: LikeEvent, occurred_ms: int | None = None) -> tuple[int, int] | None:
        """``(delta, seq_inc)`` of a new transition, or None for a duplicate/stale event."""
        key = edge_key(ev.post_id, ev.user_id)
        liked = ev.liked
        packed = self.edges.get(key)
        if packed is None:
            delta, inc = (1 if liked else -1), 1
        else:
            version = (packed >> 1) & _VERSION_MASK
            if ev.edge_version <= version:
                return None
            delta, inc = int(liked) - (packed & 1), ev.edge_version - version
        ts = ev.occurred_ms if occurred_ms is None else occurred_ms
        self.edges[key] = _pack(ev.edge_version, liked, ts // 1000)
        if ts > self.max_ms:
            self.max_ms = ts
        return delta, inc

    def maybe_evict(self) -> int:
        """Forget edges idle beyond the TTL (a full sweep at most every TTL/8 of event time)."""
        if self.max_ms - self._swept_ms < self.ttl_ms // 8:
            return 0
        self._swept_ms = self.max_ms
        cutoff_s = (self.max_ms - self.ttl_ms) // 1000
        shift = _VERSION_BITS + 1
        stale = [k for k, v in self.edges.items() if (v >> shift) < cutoff_s]
        for k in stale:
            del self.edges[k]
        return len(stale)

    def snapshot(self) -> tuple[dict[int, int], int]:
        """A copy that later mutation cannot alias."""
        return dict(self.edges), self.max_ms
