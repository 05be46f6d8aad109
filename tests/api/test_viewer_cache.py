"""The viewer cache on the real Redis and edge store, as several API processes share it:
a state read earlier never overwrites a newer one, and a process that could not write a
committed state makes every other process bypass the user's cached states until the
stale hash is deleted (read-your-writes with more than one API process)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
import redis.asyncio as aioredis

from core.settings import CommonSettings
from ingest_api.db import connection, make_pool
from ingest_api.viewer_cache import ViewerCache, viewer_key
from tests.conftest import fresh_id

pytestmark = pytest.mark.integration

_NOBODY = "redis://127.0.0.1:1/0"  # refused at once: a process that lost Redis


def _marked(s: CommonSettings, user: int) -> bool:
    with psycopg.connect(s.postgres_url) as conn:
        sql = "SELECT 1 FROM viewer_cache_stale WHERE user_id = %s"
        return conn.execute(sql, (user,)).fetchone() is not None


async def _scenario(s: CommonSettings, user: int, post: int, other: int) -> list[object]:
    pool = make_pool(s.postgres_url, min_size=1, max_size=2, timeout=5)
    await pool.open()
    up = aioredis.Redis.from_url(s.redis_url)
    down = aioredis.Redis.from_url(_NOBODY, socket_connect_timeout=0.5)
    a, b = ViewerCache(down, pool, 60), ViewerCache(up, pool, 60)
    seen: list[object] = []
    try:
        async with connection(pool) as conn:
            # an older read arriving after a newer write changes nothing
            await b.put_many(user, {post: (2, True), other: (1, False)})
            await b.put_many(user, {post: (1, False)})
            seen.append(await b.get_many(conn, user, [post, other]))
            # process A commits version 3 (unliked) and cannot write the cache
            await a.put_many(user, {post: (1, True)})  # a fill from a read: nothing stale
            seen.append(_marked(s, user))
            await a.put_many(user, {post: (3, False)}, committed=True)
            seen.append(_marked(s, user))
            # process B, whose Redis still holds version 2 (liked), must not serve it
            seen.append(await b.get_many(conn, user, [post, other]))
            seen.append((await up.exists(viewer_key(user)), _marked(s, user)))
            # from then on B caches again what it reads from the edge store
            await b.put_many(user, {post: (3, False)})
            seen.append(await b.get_many(conn, user, [post]))
    finally:
        await up.aclose()
        await down.aclose()
        await pool.close()
    return seen


def test_the_cache_never_goes_back_and_a_failed_write_is_seen_by_every_process(
    stack: CommonSettings,
) -> None:
    user, post, other = fresh_id(), fresh_id(), fresh_id()
    seen = asyncio.run(_scenario(stack, user, post, other))
    assert seen == [
        {post: True, other: False},  # version 2 kept over the older read's version 1
        False,
        True,  # marked stale in the edge store
        {},  # bypassed (the stale "liked" is not served)
        (0, False),  # the hash deleted and the mark cleared by the first to see it
        {post: False},
    ]


async def _committed_batch(s: CommonSettings, users: list[int], post: int) -> list[object]:
    pool = make_pool(s.postgres_url, min_size=1, max_size=2, timeout=5)
    await pool.open()
    up = aioredis.Redis.from_url(s.redis_url)
    down = aioredis.Redis.from_url(_NOBODY, socket_connect_timeout=0.5)
    try:
        batch = [(u, post, 4, True) for u in users] + [(users[0], post + 1, 2, False)]
        await ViewerCache(up, pool, 60).put_committed(batch)
        seen: list[object] = [
            [await up.hgetall(viewer_key(u)) for u in users],
            [_marked(s, u) for u in users],
        ]
        await ViewerCache(down, pool, 60).put_committed([(u, post, 5, False) for u in users])
        seen.append([_marked(s, u) for u in users])
        return seen
    finally:
        await up.aclose()
        await down.aclose()
        await pool.close()


def test_a_batch_of_committed_states_is_written_at_once_or_every_user_marked_stale(
    stack: CommonSettings,
) -> None:
    users, post = [fresh_id() for _ in range(3)], fresh_id()
    hashes, marked_before, marked_after = asyncio.run(_committed_batch(stack, users, post))
    assert hashes == [
        {str(post).encode(): b"4:1", str(post + 1).encode(): b"2:0"},
        {str(post).encode(): b"4:1"},
        {str(post).encode(): b"4:1"},
    ]
    assert marked_before == [False] * 3
    assert marked_after == [True] * 3, "a failed batch write marks every user of it"
