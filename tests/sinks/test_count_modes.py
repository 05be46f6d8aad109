"""The count sinks' three kinds of write, against the real Redis and Postgres: the live
flow's compare-and-set on ``seq``, a backfill's rebuild (also repairs damage at the same
``seq``), and a forced value (the flow adopted a backfill's truth: written even below the
stored ``seq``, and what follows it applies on top); and many posts in one batch."""

from __future__ import annotations

import psycopg
import pytest
import redis

from core.records import CountUpdate
from core.settings import CommonSettings
from schemas.redis_keys import count_key, count_seq_key
from sinks import postgres_counts, redis_counts
from tests.conftest import fresh_id

pytestmark = pytest.mark.integration

STEPS = [  # (writes, rebuild, the (count, seq) stored afterwards)
    ([CountUpdate(0, 5, 10)], False, (5, 10)),
    ([CountUpdate(0, 4, 9)], False, (5, 10)),  # older: ignored
    ([CountUpdate(0, 7, 10)], False, (5, 10)),  # same seq: the live flow leaves it
    ([CountUpdate(0, 7, 10)], True, (7, 10)),  # a rebuild repairs it
    ([CountUpdate(0, 3, 8, forced=True)], False, (3, 8)),  # forced below the stored seq
    (
        [CountUpdate(0, 4, 9), CountUpdate(0, 2, 7, forced=True), CountUpdate(0, 3, 8)],
        False,
        (3, 8),
    ),
]


def _redis_state(r: redis.Redis, post: int) -> tuple[int, int]:
    n, s = r.mget([count_key(post), count_seq_key(post)])
    return int(n), int(s)


def _pg_state(conn: psycopg.Connection, post: int) -> tuple[int, int]:
    row = conn.execute(
        "SELECT like_count, seq FROM post_like_counts WHERE post_id = %s", (post,)
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _at(post: int, ups: list[CountUpdate]) -> list[CountUpdate]:
    return [CountUpdate(post, u.count, u.seq, forced=u.forced) for u in ups]


def test_compare_and_set_rebuild_and_forced_writes(stack: CommonSettings) -> None:
    post = fresh_id()
    r = redis.Redis.from_url(stack.redis_url)
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        try:
            for ups, rebuild, expected in STEPS:
                redis_counts.apply_counts(r, _at(post, ups), rebuild=rebuild)
                postgres_counts.write_counts(conn, _at(post, ups), rebuild=rebuild)
                assert _redis_state(r, post) == expected, (ups, rebuild)
                assert _pg_state(conn, post) == expected, (ups, rebuild)
        finally:
            r.delete(count_key(post), count_seq_key(post))
            conn.execute("DELETE FROM post_like_counts WHERE post_id = %s", (post,))


def test_a_batch_larger_than_one_script_call(stack: CommonSettings) -> None:
    first = fresh_id()
    posts = list(range(first, first + 3 * redis_counts.CHUNK + 7))
    r = redis.Redis.from_url(stack.redis_url)
    try:
        r.set(count_seq_key(posts[5]), 10**6)  # one post already further: left alone
        applied = redis_counts.apply_counts(r, [CountUpdate(p, p % 7, 3) for p in posts])
        assert [u.post_id for u in applied] == [p for p in posts if p != posts[5]]
        got = r.mget([count_key(p) for p in posts])
        assert [int(v) if v is not None else None for v in got] == [
            None if p == posts[5] else p % 7 for p in posts
        ]
    finally:
        for i in range(0, len(posts), 500):
            chunk = posts[i : i + 500]
            r.delete(*[count_key(p) for p in chunk], *[count_seq_key(p) for p in chunk])
