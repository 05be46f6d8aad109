"""Compare every count projection with the edge store (contract section 8).

Two views of the same data:

* :func:`measure` compares counts as they are right now (a post absent from a
  projection counts as 0): what the end-to-end tests poll until the pipeline drains.
* :func:`judge` says whether one projection value is *wrong* rather than merely behind,
  using its ``seq`` (see ``ops.projections``). Each edge transition adds exactly 1 to
  ``seq`` and exactly +1 or -1 to the count, so a value at ``seq_p`` that is only
  missing the transitions up to the truth's ``seq_t`` satisfies ``seq_p <= seq_t``,
  ``|count_t - count_p| <= seq_t - seq_p`` and equal parity of the two differences.
  Breaking any of these is drift whatever is in flight; meeting them with
  ``seq_p < seq_t`` is undecided until the projection or the post settles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from core.settings import CommonSettings
from ops.projections import PROJECTIONS, READERS, State, edge_store


class Verdict(Enum):
    """What a projection value says about its post."""

    EXACT = "exact"  # same seq, same count
    DRIFT = "drift"  # impossible for a value that is only behind
    BEHIND = "behind"  # consistent with transitions still in flight


def judge(got: State, want: State) -> Verdict:
    """The verdict on projection value ``got`` against the truth ``want``, where the
    truth was read after the projection (truth only moves forward)."""
    (count_p, seq_p), (count_t, seq_t) = got, want
    gap, diff = seq_t - seq_p, count_t - count_p
    if gap < 0 or abs(diff) > gap or (gap - diff) % 2:
        return Verdict.DRIFT
    return Verdict.EXACT if gap == 0 else Verdict.BEHIND


@dataclass
class DriftReport:
    """Per projection: posts whose value differs from the truth, as (post, got, want)."""

    posts_checked: int
    drift: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    unsettled: dict[str, list[int]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No drift anywhere."""
        return not any(self.drift.values())

    def summary(self) -> dict[str, Any]:
        """Counts of drifting posts per projection, and a few examples."""
        out: dict[str, Any] = {"posts_checked": self.posts_checked}
        for name, rows in self.drift.items():
            out[name] = {"drifting_posts": len(rows), "examples": rows[:5]}
            if self.unsettled.get(name):
                out[name]["unsettled_posts"] = len(self.unsettled[name])
        return out


def measure(s: CommonSettings, posts: list[int] | None = None) -> DriftReport:
    """Counts that differ from the edge store right now, in every projection."""
    truth = edge_store(s, posts)
    ids = sorted(truth)
    report = DriftReport(posts_checked=len(ids))
    for name in PROJECTIONS:
        got = READERS[name](s, ids)
        report.drift[name] = [(p, got[p][0], truth[p][0]) for p in ids if got[p][0] != truth[p][0]]
    return report


def converge(s: CommonSettings, posts: list[int], timeout: float = 180) -> DriftReport:
    """Poll :func:`measure` until no projection drifts for ``posts`` (or the timeout):
    the final report (what the end-to-end tests and benchmarks wait for)."""
    deadline = time.monotonic() + timeout
    while True:
        report = measure(s, posts)
        if report.clean or time.monotonic() > deadline:
            return report
        time.sleep(2)


def edge_truth(s: CommonSettings, posts: list[int] | None = None) -> dict[int, int]:
    """Liked edges per post."""
    return {p: c for p, (c, _) in edge_store(s, posts).items()}


def redis_counts(s: CommonSettings, posts: list[int]) -> dict[int, int]:
    """``likes:count:{post}`` per post (absent: 0)."""
    return {p: c for p, (c, _) in READERS["redis"](s, posts).items()}


def postgres_counts(s: CommonSettings, posts: list[int]) -> dict[int, int]:
    """``post_like_counts.like_count`` per post (absent: 0)."""
    return {p: c for p, (c, _) in READERS["postgres"](s, posts).items()}
