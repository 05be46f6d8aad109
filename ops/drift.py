"""Compare every count projection with the edge store (contract section 7).

The edge store's ``count(*) WHERE state = 'liked'`` per post is the truth; Redis
``likes:count:*``, Postgres ``post_like_counts`` and the sum of ClickHouse window ``net``
must equal it. A post absent from a projection counts as 0 there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from core.settings import CommonSettings
from ops.analytics import query
from schemas.redis_keys import count_key

PROJECTIONS = ("redis", "postgres", "clickhouse")


@dataclass
class DriftReport:
    """Per projection: posts whose value differs from the truth, as (post, got, want)."""

    posts_checked: int
    drift: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No drift anywhere."""
        return not any(self.drift.values())

    def summary(self) -> dict[str, Any]:
        """Counts of drifting posts per projection, and a few examples."""
        return {
            "posts_checked": self.posts_checked,
            **{p: {"drifting_posts": len(d), "examples": d[:5]} for p, d in self.drift.items()},
        }


def edge_truth(s: CommonSettings, posts: list[int] | None = None) -> dict[int, int]:
    """Liked edges per post (every post with any edge, or just ``posts``)."""
    sql = (
        "SELECT post_id, count(*) FILTER (WHERE state = 'liked') FROM post_likes"
        + (" WHERE post_id = ANY(%s)" if posts is not None else "")
        + " GROUP BY post_id"
    )
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(sql, (posts,) if posts is not None else None).fetchall()
    found = {int(p): int(n) for p, n in rows}
    return {p: found.get(p, 0) for p in posts} if posts is not None else found


def redis_counts(s: CommonSettings, posts: list[int]) -> dict[int, int]:
    r = redis.Redis.from_url(s.redis_url, socket_timeout=10)
    out: dict[int, int] = {}
    for i in range(0, len(posts), 1000):
        chunk = posts[i : i + 1000]
        for p, v in zip(chunk, r.mget([count_key(p) for p in chunk]), strict=True):
            out[p] = int(v) if v is not None else 0
    return out


def postgres_counts(s: CommonSettings, posts: list[int]) -> dict[int, int]:
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(
            "SELECT post_id, like_count FROM post_like_counts WHERE post_id = ANY(%s)", (posts,)
        ).fetchall()
    found = {int(p): int(n) for p, n in rows}
    return {p: found.get(p, 0) for p in posts}


def clickhouse_net(s: CommonSettings, posts: list[int]) -> dict[int, int]:
    _, rows = query(s, "SELECT post_id, sum(net) FROM likes.post_like_windows GROUP BY post_id")
    found = {int(p): int(n) for p, n in rows}
    return {p: found.get(p, 0) for p in posts}


def measure(s: CommonSettings, posts: list[int] | None = None) -> DriftReport:
    """Drift of every projection against the edge store."""
    truth = edge_truth(s, posts)
    ids = sorted(truth)
    report = DriftReport(posts_checked=len(ids))
    for name, read in (
        ("redis", redis_counts),
        ("postgres", postgres_counts),
        ("clickhouse", clickhouse_net),
    ):
        got = read(s, ids)
        report.drift[name] = [(p, got[p], truth[p]) for p in ids if got[p] != truth[p]]
    return report
