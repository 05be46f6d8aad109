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
COUNT_CACHE = Counter(
    "likes_api_count_cache_total",
    "like counts read by the API from its in-process cache (hit) or the stores (miss)",
    ["result"],
)
LIKED_BY_POSTS = Counter(
    "likes_api_liked_by_posts_total",
    "posts whose liked_by was read: exactly by probe or scan, or as a prefix (budget short)",
    ["method"],
)
VIEWER_CACHE = Counter(
    "likes_api_viewer_cache_total",
    "viewer like states read: from the viewer cache (hit), not in it (miss), or with the "
    "cache skipped because it may be stale or Redis failed (bypass)",
    ["result"],
)
for _result in ("hit", "miss", "bypass"):
    VIEWER_CACHE.labels(_result)
OUTBOX_WRITE_ERRORS = Counter(
    "likes_api_outbox_write_errors_total",
    "like/unlike transactions (edge, outbox row, idempotency record) the edge store failed",
)
GROUP_COMMIT_BATCH = Histogram(
    "likes_api_group_commit_batch",
    "like/unlike requests per shared statement (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
