"""Prometheus metrics of the API process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Histogram(
    "likes_api_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LIKE_TRANSITIONS = Counter(
    "likes_api_transitions_total", "like/unlike requests applied", ["action", "changed"]
)
