"""Which store errors each sink retries: the classification itself, store by store.

(The retry behaviour on real stores is in ``test_sink_retry.py``.)
"""

from __future__ import annotations

import psycopg
import pytest
import redis
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)
from confluent_kafka import KafkaError, KafkaException

from sinks import clickhouse_sinks, redis_store
from sinks.errors import KafkaDeliveryError
from sinks.kafka_topic import KafkaTopicSink
from sinks.postgres_counts import PostgresCountSink

SERVER, EMBEDDED = "http://127.0.0.1:8123", "chdb:///tmp/never-opened"


@pytest.mark.parametrize(
    ("url", "error", "transient"),
    [
        (SERVER, OperationalError("connection refused"), True),
        (SERVER, DatabaseError("Code: 252. TOO_MANY_PARTS", code=252), True),
        (SERVER, ProgrammingError("column count does not match"), False),
        (SERVER, DataError("value out of range"), False),
        (EMBEDDED, DatabaseError("Code: 252. TOO_MANY_PARTS", code=252), True),
        (EMBEDDED, DatabaseError("Code: 241. MEMORY_LIMIT_EXCEEDED", code=241), True),
        (EMBEDDED, DatabaseError("Code: 60. UNKNOWN_TABLE", code=60), False),
        (EMBEDDED, ProgrammingError("Unable to open the chdb engine"), False),
    ],
)
def test_clickhouse(url: str, error: Exception, transient: bool) -> None:
    assert clickhouse_sinks.is_transient(url, error) is transient


def test_redis() -> None:
    assert redis_store.is_transient(redis.ConnectionError("refused"))
    assert redis_store.is_transient(redis.TimeoutError("timed out"))
    assert redis_store.is_transient(redis.BusyLoadingError("loading"))
    assert not redis_store.is_transient(redis.AuthenticationError("wrong password"))
    assert not redis_store.is_transient(redis.ResponseError("WRONGTYPE"))


def test_postgres() -> None:
    sink = PostgresCountSink("postgresql://x@127.0.0.1:1/x")
    assert sink.is_transient(psycopg.OperationalError("server closed the connection"))
    assert sink.is_transient(psycopg.errors.SerializationFailure("could not serialize"))
    assert not sink.is_transient(psycopg.errors.UndefinedTable("no such table"))


def test_kafka() -> None:
    sink = KafkaTopicSink("127.0.0.1:1", "t")
    assert sink.is_transient(KafkaDeliveryError("1 unacknowledged", transient=True))
    assert not sink.is_transient(KafkaDeliveryError("too large", transient=False))
    assert sink.is_transient(KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)))
    assert not sink.is_transient(KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
    assert sink.name == "kafka_t"


def test_trending_rebuild() -> None:
    """The backfill's trending rebuild reads Postgres and writes Redis: both stores'
    transient errors, nothing else (a script error stays an error)."""
    from core.settings import CommonSettings
    from ops.backfill_sinks import TrendingRebuildSink

    sink = TrendingRebuildSink(CommonSettings(), half_life_s=3600)
    assert sink.is_transient(redis.ConnectionError("refused"))
    assert sink.is_transient(psycopg.OperationalError("server closed the connection"))
    assert sink.is_transient(psycopg.errors.IdleInTransactionSessionTimeout("idle"))
    assert not sink.is_transient(redis.ResponseError("ERR Error running script"))
    assert not sink.is_transient(psycopg.errors.UndefinedTable("no such table"))
