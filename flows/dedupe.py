"""Dedupe by edge version: the last applied version per edge, bounded by an idle TTL.

Guarantee: an event whose version is not above the last applied version of its edge is
dropped, as long as the edge was seen within ``ttl_ms`` of event time. An edge idle for
longer is forgotten (memory stays bounded); a duplicate of it arriving after that is
accepted again, and the drift it causes is the reconciliation job's to repair.
Eviction runs on event time only, so a replay makes the same decisions.

With an edge-store directory (:mod:`flows.edge_store`, the production flows' recovery
store) the map is kept there and a snapshot names a generation of it, so an epoch costs
the edges it changed; without one (tests, benchmarks) the snapshot holds the whole map.
A resume gives the map the snapshot was taken from in either case.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flows.edge_store import EdgeStore, Row, StoredEdges
from schemas.events import LikeEvent

_VERSION_BITS = 32
_VERSION_MASK = (1 << _VERSION_BITS) - 1
_SEEN_SHIFT = _VERSION_BITS + 1
_USER_MASK = (1 << 64) - 1
Snapshot = tuple[dict[int, int], int] | StoredEdges
log = logging.getLogger(__name__)


def edge_key(post_id: int, user_id: int) -> int:
    """One int per edge: ids are below 2**63, so this is collision-free."""
    return (post_id << 64) | user_id


def _pack(version: int, liked: int, seen_s: int) -> int:
    return (seen_s << _SEEN_SHIFT) | ((version & _VERSION_MASK) << 1) | int(liked)


def _row(key: int, packed: int) -> Row:
    return (
        key >> 64,
        key & _USER_MASK,
        (packed >> 1) & _VERSION_MASK,
        packed & 1,
        packed >> _SEEN_SHIFT,
    )


class EdgeDeduper:
    """Per-edge ``(version, liked, last seen)`` packed in one int, for small memory."""

    def __init__(
        self, ttl_ms: int, snapshot: Snapshot | None = None, store_dir: Path | None = None
    ) -> None:
        self.ttl_ms = ttl_ms
        self.store_dir = store_dir
        self.gen = 0
        self.edges: dict[int, int] = {}
        if isinstance(snapshot, StoredEdges):
            if store_dir is None:
                raise ValueError("this snapshot's edges are in an edge store: give its directory")
            self.gen, self.max_ms = snapshot.gen, snapshot.max_ms
        else:
            self.edges = dict(snapshot[0]) if snapshot else {}
            self.max_ms = snapshot[1] if snapshot else 0
        self._resumed = snapshot
        self._swept_ms = self.max_ms
        self._store: EdgeStore | None = None
        self._dirty: set[int] | None = None
        self._forgot = False

    @property
    def loaded(self) -> bool:
        """Whether ``edges`` holds the map (a resumed store's map loads at ``attach``)."""
        return self.store_dir is None or self._store is not None or not self.gen

    def attach(self, partition: int) -> None:
        """Open partition ``partition``'s edge store and load the resumed map from it
        (before the first event; a no-op without a store directory or once attached)."""
        if self.store_dir is None or self._store is not None:
            return
        t0 = time.monotonic()
        store = EdgeStore(self.store_dir, partition)
        rows = store.resume(self.gen)  # generation 0: the file is emptied
        if self.gen:
            edges = self.edges
            for post, user, version, liked, seen_s in rows:
                edges[edge_key(post, user)] = _pack(version, liked, seen_s)
            log.info(
                "%s partition %d: %d edges of generation %d loaded in %.2f s",
                self.store_dir,
                partition,
                len(edges),
                self.gen,
                time.monotonic() - t0,
            )
        self._dirty = set()  # the first write of a fresh or older-format map is all of it
        self._store = store

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
        if self._dirty is not None:
            self._dirty.add(key)
        if ts > self.max_ms:
            self.max_ms = ts
        return delta, inc

    def maybe_evict(self) -> int:
        """Forget edges idle beyond the TTL (a full sweep at most every TTL/8 of event time)."""
        if self.max_ms - self._swept_ms < self.ttl_ms // 8:
            return 0
        self._swept_ms = self.max_ms
        cutoff_s = (self.max_ms - self.ttl_ms) // 1000
        stale = [k for k, v in self.edges.items() if (v >> _SEEN_SHIFT) < cutoff_s]
        for k in stale:
            del self.edges[k]
        if stale and self._store is not None:
            self._forgot = True
        return len(stale)

    def snapshot(self) -> Any:
        """A copy that later mutation cannot alias; with a store, the edges changed since
        the last snapshot are committed there first as the next generation."""
        if self.store_dir is None:
            return dict(self.edges), self.max_ms
        if self._store is None or self._dirty is None:  # nothing seen since the resume
            return self._resumed if self._resumed is not None else StoredEdges(0, self.max_ms)
        edges = self.edges
        changed = [_row(k, edges[k]) for k in sorted(self._dirty) if k in edges]

        def everything() -> list[Row]:
            return [_row(k, edges[k]) for k in sorted(edges)]

        self.gen += 1
        self._store.write(self.gen, changed, len(edges), everything, new_segment=self._forgot)
        self._dirty.clear()
        self._forgot = False
        self._resumed = StoredEdges(self.gen, self.max_ms)
        return self._resumed
