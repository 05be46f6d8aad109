"""The API's own Prometheus figures for likes: server-side latency sums, transitions.

Metric names come from ``ingest_api.metrics`` and the route label from the API's
router, so a rename in the product cannot silently zero these figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.fixtures import LIKE_ROUTE
from core.settings import CommonSettings
from ingest_api.metrics import LIKE_TRANSITIONS, REQUESTS

_LATENCY = next(iter(REQUESTS.describe())).name
_TRANSITIONS = next(iter(LIKE_TRANSITIONS.describe())).name


@dataclass(frozen=True)
class LikeSums:
    """Cumulative server-side sums for 200 answers to likes since the API started."""

    latency_sum_s: float = 0.0
    latency_count: float = 0.0
    changed: float = 0.0
    unchanged: float = 0.0

    def __sub__(self, o: LikeSums) -> LikeSums:
        return LikeSums(
            self.latency_sum_s - o.latency_sum_s,
            self.latency_count - o.latency_count,
            self.changed - o.changed,
            self.unchanged - o.unchanged,
        )

    @property
    def mean_ms(self) -> float | None:
        """Server-side mean latency of a like."""
        return self.latency_sum_s / self.latency_count * 1000 if self.latency_count else None


def parse_like_sums(text: str) -> LikeSums:
    """The sums in a Prometheus text exposition."""
    got = {"sum": 0.0, "count": 0.0, "true": 0.0, "false": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            lb = s.labels
            if s.name == _TRANSITIONS + "_total" and lb.get("action") == "like":
                key = lb.get("changed", "")
                got[key] = got.get(key, 0.0) + s.value
            is_like = lb.get("method") == "POST" and lb.get("route") == LIKE_ROUTE
            if is_like and lb.get("status") == "200" and s.name.startswith(_LATENCY + "_"):
                suffix = s.name.removeprefix(_LATENCY + "_")
                if suffix in ("sum", "count"):
                    got[suffix] += s.value
    return LikeSums(got["sum"], got["count"], got["true"], got["false"])


def like_sums() -> LikeSums:
    """Read the API's ``/metrics`` now."""
    return parse_like_sums(httpx.get(f"{CommonSettings().api_url}/metrics", timeout=10).text)
