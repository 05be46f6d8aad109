"""``insert_retrying`` on a real embedded store: an insert ClickHouse refuses for too many
parts (its merges behind) lands once the merges catch up, exactly once; one refused for
a reason time does not relieve fails at once. The repair route of the analytics flow and
``likes reconcile``'s direct writes use it, so a busy store no longer fails a backfill."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from prometheus_client import REGISTRY

from sinks import clickhouse_store
from sinks.base import RetryPolicy
from sinks.clickhouse_sinks import insert_retrying

pytestmark = pytest.mark.integration
TABLE = "parts_probe"


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    clickhouse_store.close_all()
    url = f"chdb://{tmp_path_factory.mktemp('retry') / 'store'}"
    client = clickhouse_store.get_client(url)
    client.command("CREATE DATABASE IF NOT EXISTS likes")
    client.command(
        f"CREATE TABLE likes.{TABLE} (k UInt64, part String) ENGINE = ReplacingMergeTree"
        " ORDER BY (k, part) SETTINGS parts_to_throw_insert = 2, parts_to_delay_insert = 1"
    )
    client.command(f"SYSTEM STOP MERGES likes.{TABLE}")
    yield url
    clickhouse_store.close_all()  # later tests may open another store path


def _rows(url: str) -> int:
    result = clickhouse_store.get_client(url).query(f"SELECT count() FROM likes.{TABLE} FINAL")
    return int(result.result_rows[0][0])


def _retries() -> float:
    sample = REGISTRY.get_sample_value("likes_sink_retries_total", {"sink": f"{TABLE}_repair"})
    return sample or 0.0


def test_an_insert_refused_for_too_many_parts_lands_once_merges_catch_up(
    store: str, caplog: pytest.LogCaptureFixture
) -> None:
    retries_before = _retries()
    for k in range(3):
        try:
            clickhouse_store.insert(store, TABLE, [(k, "a")], ["k", "part"])
        except DatabaseError:
            break
    with pytest.raises(DatabaseError, match="TOO_MANY_PARTS"):
        clickhouse_store.insert(store, TABLE, [(9, "a")], ["k", "part"])  # as a plain insert
    before = _rows(store)

    def merges_catch_up() -> None:
        time.sleep(1.0)
        with clickhouse_store.LOCK:
            client = clickhouse_store.get_client(store)
            client.command(f"SYSTEM START MERGES likes.{TABLE}")
            client.command(f"OPTIMIZE TABLE likes.{TABLE} FINAL")

    threading.Thread(target=merges_catch_up, daemon=True).start()
    t0 = time.monotonic()
    insert_retrying(store, TABLE, [(9, "a")], ["k", "part"], RetryPolicy(budget_s=30))
    assert time.monotonic() - t0 >= 0.9  # it was refused first, then retried
    assert _rows(store) == before + 1
    assert _retries() > retries_before, "every retry is counted"
    assert any("TOO_MANY_PARTS" in r.getMessage() for r in caplog.records), "and logged"


def test_an_insert_refused_for_good_fails_at_once(store: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(DatabaseError):
        insert_retrying(store, "no_such_table", [(1, "a")], ["k", "part"], RetryPolicy(30))
    assert time.monotonic() - t0 < 5
