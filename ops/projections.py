"""Read every count projection and the edge store as ``{post: (count, seq)}``.

``seq`` is the position a value reflects: the number of edge transitions applied, which
for the edge store is ``sum(version)`` of the post's edges (every transition raises one
edge's version by exactly one). Redis and ``post_like_counts`` store the ``seq`` the
counts flow wrote with the count; ClickHouse's is the sum of ``transitions`` over the
post's window rows. A post absent from a projection reads as ``(0, 0)``.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import redis

from core.settings import CommonSettings
from ops.analytics import query
from schemas.redis_keys import count_key, count_seq_key

State = tuple[int, int]  # (count, seq)
Reader = Callable[[CommonSettings, list[int] | None], dict[int, State]]
PROJECTIONS = ("redis", "postgres", "clickhouse")
_IN_LIST_MAX = 500  # longer post lists are read whole and filtered here
_COUNT_PREFIX = count_key(0)[:-1]


def _only(found: dict[int, State], posts: list[int] | None) -> dict[int, State]:
    if posts is None:
        return found
    return {p: found.get(p, (0, 0)) for p in posts}


def edge_store(s: CommonSettings, posts: list[int] | None = None) -> dict[int, State]:
    """The truth: liked edges and ``sum(version)`` per post."""
    sql = "SELECT post_id, count(*) FILTER (WHERE state = 'liked'), sum(version) FROM post_likes"
    if posts is not None:
        sql += " WHERE post_id = ANY(%s)"
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(sql + " GROUP BY post_id", (posts,) if posts is not None else None)
        found = {int(p): (int(n), int(v)) for p, n, v in rows.fetchall()}
    return _only(found, posts)


def _redis_posts(r: redis.Redis) -> list[int]:
    posts = []
    for key in r.scan_iter(match=f"{_COUNT_PREFIX}*", count=1000):
        tail = key.decode().removeprefix(_COUNT_PREFIX)
        if tail.isdigit():
            posts.append(int(tail))
    return posts


def redis_counts(s: CommonSettings, posts: list[int] | None = None) -> dict[int, State]:
    """``likes:count:{post}`` with its ``seq`` key."""
    r = redis.Redis.from_url(s.redis_url, socket_timeout=10)
    ids = _redis_posts(r) if posts is None else posts
    out: dict[int, State] = {}
    for i in range(0, len(ids), 1000):
        chunk = ids[i : i + 1000]
        keys = [k for p in chunk for k in (count_key(p), count_seq_key(p))]
        values = r.mget(keys)
        for j, p in enumerate(chunk):
            count, seq = values[2 * j], values[2 * j + 1]
            if count is not None or posts is not None:
                out[p] = (int(count or 0), int(seq or 0))
    return out


def postgres_counts(s: CommonSettings, posts: list[int] | None = None) -> dict[int, State]:
    """``post_like_counts`` rows."""
    sql = "SELECT post_id, like_count, seq FROM post_like_counts"
    if posts is not None:
        sql += " WHERE post_id = ANY(%s)"
    with psycopg.connect(s.postgres_url) as conn:
        rows = conn.execute(sql, (posts,) if posts is not None else None).fetchall()
    return _only({int(p): (int(n), int(q)) for p, n, q in rows}, posts)


def clickhouse_windows(s: CommonSettings, posts: list[int] | None = None) -> dict[int, State]:
    """Sum of ``net`` and of ``transitions`` over each post's window rows."""
    sql = (
        "SELECT post_id, sum(toInt64(likes) - toInt64(unlikes)) AS net,"
        " sum(transitions) AS seq FROM likes.post_like_window_parts FINAL"
    )
    if posts is not None and 0 < len(posts) <= _IN_LIST_MAX:
        sql += f" WHERE post_id IN ({', '.join(str(int(p)) for p in posts)})"
    _, rows = query(s, sql + " GROUP BY post_id")
    return _only({int(p): (int(n), int(q)) for p, n, q in rows}, posts)


READERS: dict[str, Reader] = {
    "redis": redis_counts,
    "postgres": postgres_counts,
    "clickhouse": clickhouse_windows,
}
