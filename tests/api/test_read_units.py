"""The read path without services: liked_by's budget plan, the count cache, count fallbacks."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from ingest_api.counts import CountCache, like_counts
from ingest_api.liked_by import SCAN_SLACK, Step, plan, scan_need
from schemas.redis_keys import count_key

VIRAL, FOLLOWS, BUDGET = 1_000_000, 5_000, 20_000


def test_one_viral_post_is_probed_exactly() -> None:
    assert plan({7: VIRAL}, FOLLOWS, BUDGET) == {7: Step(probe=True, rows=FOLLOWS, exact=True)}


def test_a_small_post_is_scanned_whole() -> None:
    assert plan({7: 10}, FOLLOWS, BUDGET) == {7: Step(probe=False, rows=scan_need(10), exact=True)}
    assert plan({7: 0}, FOLLOWS, BUDGET)[7] == Step(probe=False, rows=SCAN_SLACK, exact=True)


def test_few_followees_are_probed() -> None:
    assert plan({7: 500}, 3, BUDGET)[7] == Step(probe=True, rows=3, exact=True)


def test_one_viral_post_in_a_feed_of_small_ones_is_exact() -> None:
    likes = {1: VIRAL, **{p: 50 for p in range(2, 101)}}
    steps = plan(likes, FOLLOWS, BUDGET)
    assert all(s.exact for s in steps.values())
    assert steps[1].probe and sum(s.rows for s in steps.values()) <= BUDGET


def test_a_feed_of_viral_posts_shares_the_budget() -> None:
    steps = plan({p: VIRAL for p in range(100)}, FOLLOWS, BUDGET)
    assert {s.rows for s in steps.values()} == {BUDGET // 100}
    assert not any(s.probe or s.exact for s in steps.values())


def test_small_needs_are_served_first() -> None:
    steps = plan({1: VIRAL, 2: VIRAL, 3: 10}, FOLLOWS, 3_000)
    assert steps[3] == Step(probe=False, rows=scan_need(10), exact=True)
    assert steps[1].rows + steps[2].rows + steps[3].rows <= 3_000
    assert abs(steps[1].rows - steps[2].rows) <= 1


def test_the_plan_never_exceeds_its_budget() -> None:
    rng = random.Random(7)
    for _ in range(500):
        likes = {p: rng.choice([0, 3, 40, 900, 20_000, VIRAL]) for p in range(rng.randint(1, 100))}
        followees, budget = rng.choice([1, 20, 700, 5_000, 30_000]), rng.randint(0, 40_000)
        steps = plan(likes, followees, budget)
        assert set(steps) == set(likes)
        assert sum(s.rows for s in steps.values()) <= budget
        for p, s in steps.items():
            need = min(scan_need(likes[p]), followees)
            assert s.exact == (s.rows == need)
            assert not s.probe or (s.exact and s.rows == followees)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_count_cache_expires_after_its_ttl() -> None:
    clock = Clock()
    cache = CountCache(ttl_s=1.0, max_size=10, clock=clock)
    cache.put_many({1: 5, 2: 0})
    assert cache.get_many([1, 2, 3]) == {1: 5, 2: 0}
    clock.now += 0.99
    assert cache.get_many([1]) == {1: 5}
    clock.now += 0.02
    assert cache.get_many([1, 2]) == {}
    assert len(cache) == 0


def test_count_cache_drops_the_least_recently_used() -> None:
    cache = CountCache(ttl_s=1.0, max_size=3, clock=Clock())
    cache.put_many({1: 1, 2: 2, 3: 3})
    assert cache.get_many([1]) == {1: 1}  # 2 is now the least recently used
    cache.put_many({4: 4})
    assert cache.get_many([1, 2, 3, 4]) == {1: 1, 3: 3, 4: 4}
    assert len(cache) == 3


@pytest.mark.parametrize(("ttl", "size"), [(0.0, 10), (1.0, 0)])
def test_count_cache_off(ttl: float, size: int) -> None:
    cache = CountCache(ttl_s=ttl, max_size=size, clock=Clock())
    cache.put_many({1: 1})
    assert not cache.enabled and cache.get_many([1]) == {}


class FakeRedis:
    def __init__(self, values: dict[str, bytes], down: bool = False) -> None:
        self.values, self.down, self.calls = values, down, 0

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("down")
        return [self.values.get(k) for k in keys]


class FakeCursor:
    def __init__(self, rows: list[tuple[int, int]]) -> None:
        self.rows = rows

    async def fetchall(self) -> list[tuple[int, int]]:
        return self.rows


class FakeConn:
    """``post_like_counts`` as a dict."""

    def __init__(self, compacted: dict[int, int]) -> None:
        self.compacted = compacted
        self.asked: list[list[int]] = []

    async def execute(self, sql: str, params: tuple[list[int]]) -> FakeCursor:
        assert "post_like_counts" in sql
        self.asked.append(list(params[0]))
        return FakeCursor([(p, c) for p, c in self.compacted.items() if p in params[0]])


def _counts(r: FakeRedis, conn: FakeConn, ids: list[int], cache: Any = None) -> dict[int, int]:
    return asyncio.run(like_counts(r, conn, ids, cache))  # type: ignore[arg-type]


def test_a_missing_redis_count_falls_back_to_the_compacted_one() -> None:
    r, conn = FakeRedis({count_key(1): b"4"}), FakeConn({2: 9, 1: 1})
    assert _counts(r, conn, [1, 2, 3, 2]) == {1: 4, 2: 9, 3: 0}
    assert conn.asked == [[2, 3]]


def test_redis_down_reads_every_count_from_postgres() -> None:
    r, conn = FakeRedis({count_key(1): b"4"}, down=True), FakeConn({1: 3})
    assert _counts(r, conn, [1, 2]) == {1: 3, 2: 0}


def test_cached_counts_skip_both_stores() -> None:
    r, conn = FakeRedis({count_key(1): b"4"}), FakeConn({2: 9})
    cache = CountCache(ttl_s=1.0, max_size=10, clock=Clock())
    assert _counts(r, conn, [1, 2], cache) == {1: 4, 2: 9}
    assert _counts(r, conn, [2, 1], cache) == {1: 4, 2: 9}
    assert (r.calls, len(conn.asked)) == (1, 1)
    assert _counts(r, conn, [1, 5], cache) == {1: 4, 5: 0}
    assert r.calls == 2 and conn.asked[-1] == [5]
