"""Bounded retries on real stores, through the sink base.

A transient failure (a Redis server that is not up yet) is retried on a fresh client and
the batch lands exactly once; a lost script cache is reloaded without a retry; a store
that stays down fails after the budget; a permanent error (a missing table) fails at once.
Each test asserts exactly how far ``likes_sink_retries_total``, ``likes_sink_errors_total``
and the ``likes_sink_write_seconds`` count moved. The Redis servers here are private ones
this module starts on free ports, so the shared stack is never disturbed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import redis
from prometheus_client import REGISTRY
from psycopg.conninfo import make_conninfo
from psycopg.errors import UndefinedTable

from core.records import CountUpdate
from core.settings import CommonSettings
from schemas.redis_keys import count_key, count_seq_key
from sinks.base import RetryPolicy
from sinks.errors import SinkError
from sinks.postgres_counts import PostgresCountSink
from sinks.postgres_store import IDLE_IN_TRANSACTION_S
from sinks.redis_counts import RedisCountSink
from tests.conftest import free_port, fresh_id

pytestmark = pytest.mark.integration


def _metrics(sink: str) -> tuple[float, float, float]:
    """(retries, errors, batches written) so far for ``sink``."""

    def get(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"sink": sink}) or 0.0

    return (
        get("likes_sink_retries_total"),
        get("likes_sink_errors_total"),
        get("likes_sink_write_seconds_count"),
    )


def _moved(before: tuple[float, float, float], sink: str) -> tuple[float, ...]:
    return tuple(a - b for a, b in zip(_metrics(sink), before, strict=True))


def _wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class PrivateRedis:
    """A redis-server of this test's own, on a free port, started on demand."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = data_dir
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self._dir)]
        self._procs.append(
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        _wait_for(self._answers, 10, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def calls(self, command: str) -> int:
        """How often the server ran ``command`` (``INFO commandstats``)."""
        return int(self.client().info("commandstats")[f"cmdstat_{command}"]["calls"])

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


def _counts(p: int) -> tuple[list[CountUpdate], list[str]]:
    batch = [CountUpdate(p, 1, 1), CountUpdate(p + 1, 5, 9), CountUpdate(p, 2, 2)]
    return batch, [count_key(p), count_key(p + 1), count_seq_key(p), count_seq_key(p + 1)]


def test_transient_error_is_retried_and_the_batch_lands_once(private_redis: PrivateRedis) -> None:
    """The server is down at the first attempt and comes up during the backoff (which is at
    least a second): exactly one retry, on a fresh client, and one application."""
    sink = RedisCountSink(private_redis.url, RetryPolicy(budget_s=30, first_backoff_s=1.0))
    batch, keys = _counts(fresh_id())
    before = _metrics("redis_counts")

    def start_after_first_failure() -> None:
        _wait_for(lambda: _metrics("redis_counts")[0] > before[0], 10, "the first retry")
        private_redis.start()

    part = sink.build("retry", 0, 1)
    with ThreadPoolExecutor(1) as pool:
        starter = pool.submit(start_after_first_failure)
        part.write_batch(batch)
        starter.result()
    part.close()
    assert _moved(before, "redis_counts") == (1, 0, 1)
    assert private_redis.client().mget(keys) == [b"2", b"5", b"2", b"9"]
    assert private_redis.calls("evalsha") == 1, "one script call for the batch, once"
    assert private_redis.calls("script|load") == 1


def test_lost_script_cache_is_reloaded_without_a_retry(private_redis: PrivateRedis) -> None:
    private_redis.start()
    p = fresh_id()
    part = RedisCountSink(private_redis.url).build("retry", 0, 1)
    before = _metrics("redis_counts")
    part.write_batch([CountUpdate(p, 1, 1)])
    private_redis.client().script_flush()  # as after a server restart
    part.write_batch([CountUpdate(p, 3, 3)])
    part.close()
    assert _moved(before, "redis_counts") == (0, 0, 2)
    assert private_redis.client().mget([count_key(p), count_seq_key(p)]) == [b"3", b"3"]
    assert private_redis.calls("script|load") == 2


def test_store_down_past_the_budget_raises_sink_error(private_redis: PrivateRedis) -> None:
    """Nothing listens: attempt, wait 0.4-0.8 s, attempt, and the next wait (0.8-1.2 s)
    would end past the 1 s budget, so exactly one retry, then one error."""
    sink = RedisCountSink(private_redis.url, RetryPolicy(budget_s=1.0, first_backoff_s=0.4))
    part = sink.build("retry", 0, 1)
    before = _metrics("redis_counts")
    with pytest.raises(SinkError) as raised:
        part.write_batch(_counts(fresh_id())[0])
    assert isinstance(raised.value.__cause__, redis.ConnectionError)
    assert _moved(before, "redis_counts") == (1, 1, 1)
    part.close()
    part.close()


def test_permanent_error_is_not_retried(stack: CommonSettings) -> None:
    """A missing table (the search path names no schema that exists) fails the first
    attempt, and the 60 s default budget is not spent on it."""
    url = make_conninfo(stack.postgres_url, options=f"-csearch_path=no_such_schema_{fresh_id()}")
    part = PostgresCountSink(url).build("retry", 0, 1)
    before = _metrics("postgres_counts")
    started = time.monotonic()
    with pytest.raises(SinkError) as raised:
        part.write_batch([CountUpdate(fresh_id(), 1, 1)])
    assert time.monotonic() - started < 5
    assert isinstance(raised.value.__cause__, UndefinedTable)
    assert _moved(before, "postgres_counts") == (0, 1, 1)
    part.close()
    part.close()


def test_a_session_idle_inside_a_transaction_is_ended_and_retried(stack: CommonSettings) -> None:
    """A Postgres sink's session left idle inside a transaction (its process stopped)
    is ended by the server, so its row locks cannot hold up other writers; the error is
    transient (the batch is retried on a new connection). Options in the URL stay."""
    url = make_conninfo(stack.postgres_url, options="-capplication_name=idle_probe")
    sink = PostgresCountSink(url)
    conn = sink.connect()
    try:
        row = conn.execute(
            "SELECT current_setting('idle_in_transaction_session_timeout'),"
            " current_setting('application_name')"
        ).fetchone()
        assert row == (f"{IDLE_IN_TRANSACTION_S}s", "idle_probe")
        with pytest.raises(psycopg.Error) as raised, conn.transaction():
            conn.execute("SET LOCAL idle_in_transaction_session_timeout = 100")
            time.sleep(0.5)
            conn.execute("SELECT 1")
        assert sink.is_transient(raised.value) and conn.broken
    finally:
        conn.close()
