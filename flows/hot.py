"""Hot-post detection: a sliding rate over event-time buckets, with hysteresis.

A post becomes hot when its likes in the trailing window reach ``threshold`` and cools
when they fall below ``cool_threshold`` (lower, so a post near the line does not flap).
The clock is the shard's newest event time, advanced by wall time while no events come
(not snapshotted), so an idle post still cools and a replay of past data stays in
event time.
"""

from __future__ import annotations

from core.records import HotChange


class HotDetector:
    """Per-post like buckets over the trailing window, and the posts currently hot."""

    def __init__(
        self,
        *,
        window_ms: int,
        bucket_ms: int,
        threshold: int,
        cool_threshold: int,
        snapshot: tuple[dict[int, dict[int, int]], dict[int, tuple[int, int]]] | None = None,
    ) -> None:
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self.threshold = threshold
        self.cool_threshold = cool_threshold
        self.buckets: dict[int, dict[int, int]] = (
            {p: dict(b) for p, b in snapshot[0].items()} if snapshot else {}
        )
        # post -> (became_hot_at_ms, peak_rate)
        self.hot: dict[int, tuple[int, int]] = dict(snapshot[1]) if snapshot else {}
        self._emitted: dict[int, int] = {}  # last rate emitted per hot post (not snapshotted)

    def add(self, post_id: int, occurred_ms: int, likes: int) -> None:
        """Count ``likes`` new likes of ``post_id`` at event time ``occurred_ms``."""
        b = occurred_ms - occurred_ms % self.bucket_ms
        per_post = self.buckets.setdefault(post_id, {})
        per_post[b] = per_post.get(b, 0) + likes

    def rate(self, post_id: int, now_ms: int) -> int:
        """Likes of ``post_id`` in the window ending at ``now_ms``; drops older buckets."""
        per_post = self.buckets.get(post_id)
        if not per_post:
            return 0
        horizon = now_ms - self.window_ms
        for b in [b for b in per_post if b + self.bucket_ms <= horizon]:
            del per_post[b]
        if not per_post:
            del self.buckets[post_id]
            return 0
        return sum(per_post.values())

    def evaluate(self, post_ids: set[int] | list[int], now_ms: int) -> list[HotChange]:
        """Transitions (and peak updates) of the given posts at ``now_ms``."""
        out = []
        for post_id in post_ids:
            r = self.rate(post_id, now_ms)
            episode = self.hot.get(post_id)
            if episode is None:
                if r >= self.threshold:
                    self.hot[post_id] = (now_ms, r)
                    self._emitted[post_id] = r
                    out.append(HotChange(post_id, "hot", r, r, now_ms, now_ms, None))
            elif r < self.cool_threshold:
                del self.hot[post_id]
                self._emitted.pop(post_id, None)
                out.append(HotChange(post_id, "cooled", r, episode[1], episode[0], now_ms, now_ms))
            elif self._emitted.get(post_id) != r:  # only a changed rate is news
                peak = max(episode[1], r)
                self.hot[post_id] = (episode[0], peak)
                self._emitted[post_id] = r
                out.append(HotChange(post_id, "update", r, peak, episode[0], now_ms, None))
        return out

    def sweep(self, now_ms: int) -> None:
        """Drop buckets of posts that are not hot and have gone quiet."""
        for post_id in [p for p in self.buckets if p not in self.hot]:
            self.rate(post_id, now_ms)

    def snapshot(self) -> tuple[dict[int, dict[int, int]], dict[int, tuple[int, int]]]:
        """Copies that later counting cannot alias."""
        return {p: dict(b) for p, b in self.buckets.items()}, dict(self.hot)
