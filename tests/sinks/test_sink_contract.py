"""One contract for every sink, on the real store (``tests/sinks/cases.py`` has one case
per sink, each with the exact values its store must hold):

1. write a batch: the store holds exactly the expected values;
2. replay the same batch: nothing changes;
3. replay older versions of the same keys: nothing changes;
4. close twice (and, on unreachable stores, build and close twice with no I/O).

Kafka is at-least-once, so at the topic level a replay is *not* a no-op: it appends a
second copy of every record. What is guaranteed, and asserted here, is that every record
is present exactly as produced (key, value bytes, headers in order) and that each copy is
identical to the first, down to the deterministic ``event_id`` header: a consumer that
drops copies by ``event_id`` sees exactly the expected records after any replay. The
Kafka cases read through that consumer's view; ``test_kafka_replay_appends_copies``
asserts the raw topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from bytewax.outputs import DynamicSink

from core.records import Accepted, NotificationUpdate
from core.settings import CommonSettings
from sinks import clickhouse_store
from sinks.clickhouse_sinks import ClickHouseSink, event_row, hot_row
from sinks.kafka_topic import KafkaTopicSink
from sinks.postgres_counts import PostgresCountSink
from sinks.postgres_notifications import PostgresNotificationSink
from sinks.redis_counts import RedisCountSink
from sinks.redis_hot import RedisHotSink
from sinks.redis_recent import RedisRecentSink
from sinks.redis_trending import RedisTrendingSink
from tests.conftest import fresh_id
from tests.sinks import cases, kafka_topics
from tests.sinks.cases import T0, Case

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"chdb://{tmp_path_factory.mktemp('chdb') / 'store'}"
    clickhouse_store.ensure_schema(url)
    return url


@pytest.fixture(params=cases.CASES, ids=lambda f: f.__name__)
def case(request: pytest.FixtureRequest, stack: CommonSettings, chdb_url: str) -> Iterator[Case]:
    c: Case = request.param(stack, chdb_url)
    yield c
    c.cleanup()


def test_write_replay_stale_close_twice(case: Case) -> None:
    part = case.sink.build("contract", 0, 1)
    part.write_batch(case.batch)
    assert case.read() == case.expected
    part.write_batch(case.batch)
    assert case.read() == case.expected, "replaying the batch changed something"
    if case.stale:
        part.write_batch(case.stale)
        assert case.read() == case.expected, "older versions overwrote newer ones"
    part.close()
    part.close()


UNREACHABLE = {
    "redis_counts": lambda: RedisCountSink("redis://127.0.0.1:1/0"),
    "redis_hot": lambda: RedisHotSink("redis://127.0.0.1:1/0"),
    "redis_trending": lambda: RedisTrendingSink("redis://127.0.0.1:1/0"),
    "redis_recent": lambda: RedisRecentSink(
        "redis://127.0.0.1:1/0", "postgresql://x@127.0.0.1:1/x"
    ),
    "postgres_counts": lambda: PostgresCountSink("postgresql://x@127.0.0.1:1/x"),
    "postgres_notifications": lambda: PostgresNotificationSink("postgresql://x@127.0.0.1:1/x"),
    "clickhouse": lambda: ClickHouseSink("chdb:///nonexistent/store", "hot_post_episodes", hot_row),
    "kafka": lambda: KafkaTopicSink("127.0.0.1:1", "never.created"),
}


@pytest.mark.parametrize("make", UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_build_and_close_twice_do_no_io(make: Callable[[], DynamicSink[Any]]) -> None:
    """Every store here is unreachable: building and closing must not try to reach it."""
    part = make().build("contract", 0, 1)
    part.close()
    part.close()


def test_kafka_replay_appends_copies(stack: CommonSettings, chdb_url: str) -> None:
    """At the topic level a replay appends identical copies, in the same order."""
    c = cases.kafka_dlq(stack, chdb_url)
    try:
        part = c.sink.build("contract", 0, 1)
        part.write_batch(c.batch)
        part.write_batch(c.batch)
        part.close()
        assert isinstance(c.sink, KafkaTopicSink)
        assert kafka_topics.read_all(stack.kafka_bootstrap, c.sink.topic) == c.expected * 2
    finally:
        c.cleanup()


def test_notifications_grow_by_new_actors_only(stack: CommonSettings, chdb_url: str) -> None:
    """A later batch extends the aggregate by actors the ledger had not seen."""
    c = cases.postgres_notifications(stack, chdb_url)
    try:
        part = c.sink.build("contract", 0, 1)
        part.write_batch(c.batch)
        post, author = c.batch[0].post_id, c.batch[0].recipient_id
        later = [
            NotificationUpdate(author, post, ((14, T0 + 60_000),), True),
            NotificationUpdate(author, post, ((12, T0 + 61_000),), True),  # 12's re-like
        ]
        part.write_batch(later)
        at = datetime(2026, 11, 18, 11, 7, 40, tzinfo=UTC)
        assert c.read() == [(post, [14, 12, 11], 3, at, 2)]
        part.close()
    finally:
        c.cleanup()


def test_erased_users_leave_like_events_and_replays_stay_anonymous(chdb_url: str) -> None:
    """``erase_user`` rewrites the user's rows to user 0 (totals kept); afterwards the
    anonymizing writer stores a replay of their events without the id."""
    from sinks.clickhouse_erasure import anonymizing, erase_user

    p, user, other = fresh_id(), fresh_id(), fresh_id()
    events = [
        Accepted(p, user, 1, 1, 1, T0, UUID(int=fresh_id()), "LikeCreated", None),
        Accepted(p, other, 1, 1, 1, T0 + 1, UUID(int=fresh_id()), "LikeCreated", None),
        Accepted(p, user, 2, -1, 1, T0 + 2, UUID(int=fresh_id()), "LikeRemoved", None),
    ]
    sink = ClickHouseSink(chdb_url, "like_events_raw", anonymizing(chdb_url, event_row))
    part = sink.build("erasure", 0, 1)
    part.write_batch(events)
    read = cases._ch(
        chdb_url,
        f"SELECT user_id, sum(delta) FROM likes.like_events WHERE post_id = {p}"
        " GROUP BY user_id ORDER BY user_id",
    )
    assert sorted(read()) == sorted([(other, 1), (user, 0)])
    assert erase_user(chdb_url, user) == 0
    assert sorted(read()) == sorted([(0, 0), (other, 1)]), "anonymous, totals unchanged"
    assert erase_user(chdb_url, user) == 0, "idempotent"
    part.write_batch(events)  # a replay after the erasure
    assert sorted(read()) == sorted([(0, 0), (other, 1)])
    raw = f"SELECT count() FROM likes.like_events_raw WHERE user_id = {user}"
    assert cases._ch(chdb_url, raw)() == [(0,)]
    part.close()
