"""Time-decayed engagement per post (the ``likes:trending`` ranking signal).

Each like adds ``exp((t - T0) / tau)``; the score kept is the natural log of that sum
(forward decay in log space: no overflow, no rewrite of every score as time passes).
Ranking by it equals ranking by ``sum(exp(-(now - t) / tau))`` at any ``now``. Scores
are absolute and depend only on the set of likes, so a replay rewrites the same values.
"""

from __future__ import annotations

import math

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the fixed landmark of forward decay
FORGET_BELOW = 20.0  # a post whose decayed weight fell below e**-20 leaves the set


class TrendingScores:
    """``{post: log-sum score}`` of one shard."""

    def __init__(self, half_life_s: float, snapshot: dict[int, float] | None = None) -> None:
        self.tau_ms = half_life_s * 1000 / math.log(2)
        self.scores: dict[int, float] = dict(snapshot) if snapshot else {}

    def add(self, post_id: int, occurred_ms: int) -> float:
        """Count one like; return the post's new score."""
        x = (occurred_ms - T0_MS) / self.tau_ms
        cur = self.scores.get(post_id)
        new = x if cur is None else max(cur, x) + math.log1p(math.exp(-abs(cur - x)))
        self.scores[post_id] = new
        return new

    def forget_cold(self, now_ms: int) -> list[int]:
        """Drop posts whose decayed weight is negligible at ``now_ms``; return them."""
        floor = (now_ms - T0_MS) / self.tau_ms - FORGET_BELOW
        cold = [p for p, s in self.scores.items() if s < floor]
        for p in cold:
            del self.scores[p]
        return cold

    def snapshot(self) -> dict[int, float]:
        """A copy that later updates cannot alias."""
        return dict(self.scores)
