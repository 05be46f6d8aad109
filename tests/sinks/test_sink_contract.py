"""One contract for every sink, on the real store: write a batch, replay it (nothing
changes), replay older versions (nothing changes), close twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis
from bytewax.outputs import DynamicSink

from core.records import Accepted, CountUpdate, HotChange, WindowPart
from core.settings import CommonSettings
from schemas.redis_keys import HOT_KEY, TRENDING_KEY
from sinks import clickhouse_store
from sinks.clickhouse_sinks import ClickHouseSink, event_row, hot_row, window_row
from sinks.postgres_counts import PostgresCountSink
from sinks.postgres_notifications import PostgresNotificationSink
from sinks.redis_counts import RedisCountSink
from sinks.redis_hot import RedisHotSink
from sinks.redis_trending import RedisTrendingSink
from tests.conftest import fresh_id

pytestmark = pytest.mark.integration
T0 = 1_795_000_000_000


@dataclass
class Case:
    sink: DynamicSink[Any]
    batch: list[Any]
    stale: list[Any]
    read: Callable[[], Any]
    cleanup: Callable[[], Any] = lambda: None


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"chdb://{tmp_path_factory.mktemp('chdb') / 'store'}"
    clickhouse_store.ensure_schema(url)
    return url


def _counts(p: int) -> tuple[list[CountUpdate], list[CountUpdate]]:
    batch = [CountUpdate(p, 1, 1), CountUpdate(p + 1, 5, 9), CountUpdate(p, 2, 2)]
    return batch, [CountUpdate(p, 1, 1), CountUpdate(p + 1, 4, 8)]


def _redis_counts(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    r = redis.Redis.from_url(s.redis_url)
    batch, stale = _counts(p)
    return Case(
        RedisCountSink(s.redis_url),
        batch,
        stale,
        lambda: r.mget([f"likes:count:{p}", f"likes:count:{p + 1}"]),
    )


def _postgres_counts(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    batch, stale = _counts(p)

    def read() -> Any:
        with psycopg.connect(s.postgres_url) as conn:
            return conn.execute(
                "SELECT post_id, like_count, seq FROM post_like_counts "
                "WHERE post_id IN (%s, %s) ORDER BY 1",
                (p, p + 1),
            ).fetchall()

    return Case(PostgresCountSink(s.postgres_url), batch, stale, read)


def _redis_hot(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    r = redis.Redis.from_url(s.redis_url)
    batch = [
        HotChange(p, "hot", 150, 150, T0, T0, None),
        HotChange(p, "update", 170, 170, T0, T0 + 1, None),
        HotChange(p + 1, "hot", 130, 130, T0, T0, None),
        HotChange(p + 1, "cooled", 20, 130, T0, T0 + 5, T0 + 5),
    ]
    return Case(
        RedisHotSink(s.redis_url),
        batch,
        [],
        lambda: (r.zscore(HOT_KEY, str(p)), r.zscore(HOT_KEY, str(p + 1))),
        lambda: r.zrem(HOT_KEY, str(p), str(p + 1)),
    )


def _ch(table: str, rows_sql: str) -> Callable[[str], Callable[[], Any]]:
    def reader(url: str) -> Callable[[], Any]:
        return lambda: clickhouse_store.query_readonly(url, rows_sql)[1]

    return reader


def _clickhouse_windows(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    batch = [
        WindowPart(p, T0, T0 + 60_000, "p0", 3, 1, 4),
        WindowPart(p, T0, T0 + 60_000, "p1", 2, 0, 2),
        WindowPart(p, T0, T0 + 60_000, "late:x", 1, 0, 1),
    ]
    stale = [WindowPart(p, T0, T0 + 60_000, "p0", 1, 1, 2)]
    sql = f"SELECT likes, unlikes, net FROM likes.post_like_windows WHERE post_id = {p}"
    return Case(
        ClickHouseSink(chdb_url, "post_like_window_parts", window_row),
        batch,
        stale,
        _ch("w", sql)(chdb_url),
    )


def _clickhouse_events(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    batch = [
        Accepted(p, 7, 1, 1, 1, T0, "5b0f6f4e-6f7e-4b5e-9c4e-0a8d1b1e2f3a", "LikeCreated", None),
        Accepted(
            p, 7, 2, -1, 1, T0 + 9, "6b0f6f4e-6f7e-4b5e-9c4e-0a8d1b1e2f3a", "LikeRemoved", None
        ),
    ]
    sql = f"SELECT count(), sum(delta) FROM likes.like_events WHERE post_id = {p}"
    return Case(
        ClickHouseSink(chdb_url, "like_events_raw", event_row),
        batch,
        batch[:1],
        _ch("e", sql)(chdb_url),
    )


def _clickhouse_hot(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    batch = [
        HotChange(p, "hot", 150, 150, T0, T0, None),
        HotChange(p, "cooled", 20, 180, T0, T0 + 9, T0 + 9),
    ]
    sql = (
        f"SELECT count(), max(peak_rate), countIf(cooled_at IS NULL) FROM likes.hot_posts "
        f"WHERE post_id = {p}"
    )
    return Case(
        ClickHouseSink(chdb_url, "hot_post_episodes", hot_row),
        batch,
        batch[:1],
        _ch("h", sql)(chdb_url),
    )


def _notifications(s: CommonSettings, chdb_url: str) -> Case:
    author, post = fresh_id(), fresh_id()
    batch = [
        Accepted(post, 11, 1, 1, 1, T0, "e1", "LikeCreated", author),
        Accepted(post, 12, 1, 1, 1, T0 + 5, "e2", "LikeCreated", author),
        Accepted(post, 11, 3, 1, 2, T0 + 9, "e3", "LikeCreated", author),
    ]  # re-like

    def read() -> Any:
        with psycopg.connect(s.postgres_url) as conn:
            return conn.execute(
                "SELECT actor_ids, total_actors FROM notifications WHERE recipient_id = %s",
                (author,),
            ).fetchall()

    return Case(PostgresNotificationSink(s.postgres_url), batch, batch[:1], read)


def _trending(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    r = redis.Redis.from_url(s.redis_url)
    batch = [(p, 3.5), (p + 1, 2.0), (p, 4.25), (p + 1, None)]
    return Case(
        RedisTrendingSink(s.redis_url),
        batch,
        [],
        lambda: (r.zscore(TRENDING_KEY, str(p)), r.zscore(TRENDING_KEY, str(p + 1))),
        lambda: r.zrem(TRENDING_KEY, str(p), str(p + 1)),
    )


CASES = [
    _notifications,
    _trending,
    _redis_counts,
    _postgres_counts,
    _redis_hot,
    _clickhouse_windows,
    _clickhouse_events,
    _clickhouse_hot,
]


@pytest.fixture(params=CASES, ids=lambda f: f.__name__.strip("_"))
def case(request: pytest.FixtureRequest, stack: CommonSettings, chdb_url: str) -> Iterator[Case]:
    c = request.param(stack, chdb_url)
    yield c
    c.cleanup()  # shared sorted sets must not keep test members


def test_write_replay_stale_close_twice(case: Case) -> None:
    part = case.sink.build("contract", 0, 1)
    part.write_batch(case.batch)
    first = case.read()
    assert first not in (None, [], [(0, None)], (None, None)), "the batch had an effect"
    part.write_batch(case.batch)
    assert case.read() == first, "replaying the batch changed something"
    if case.stale:
        part.write_batch(case.stale)
        assert case.read() == first, "older versions overwrote newer ones"
    part.close()
    part.close()


def test_expected_values(stack: CommonSettings, chdb_url: str) -> None:
    c = _clickhouse_windows(stack, chdb_url)
    part = c.sink.build("contract", 0, 1)
    part.write_batch(c.batch + c.stale)
    assert c.read() == [(6, 1, 5)]
    r = _redis_counts(stack, chdb_url)
    part2 = r.sink.build("contract", 0, 1)
    part2.write_batch(r.batch + r.stale)
    assert r.read() == [b"2", b"5"]


def test_notifications_aggregate(stack: CommonSettings, chdb_url: str) -> None:
    c = _notifications(stack, chdb_url)
    c.sink.build("contract", 0, 1).write_batch(c.batch)
    assert c.read() == [([12, 11], 2)], "two distinct actors, newest first, re-like not counted"
