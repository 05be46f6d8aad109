"""The analyst reader and server on a real embedded chDB store, beside a live writer.

chDB hosts one store path per process, so the module shares one store; the tests that
count rows compare against what was there before they started.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from analytics.reader import AnalystReader, QueryFailed, QueryLimits, translate_error
from analytics.server import REPAIR_COLUMNS, ServerHandle, start_in_thread
from analytics.sql_guard import QueryRefused
from core.records import Accepted, HotChange, WindowPart
from sinks import clickhouse_store
from sinks.clickhouse_sinks import TABLES, event_row, hot_row, window_row
from tests.analytics.test_sql_guard import LEGIT

EVENTS = "like_events_raw"
TEST_LIMITS = QueryLimits(max_execution_time_s=2, max_result_rows=10_000)
CROSS = "likes.like_events_raw AS a CROSS JOIN likes.like_events_raw AS b"
MINUTES_LONG = (
    f"SELECT count() FROM {CROSS} CROSS JOIN likes.like_events_raw AS c"
    " WHERE cityHash64(a.user_id, b.user_id, c.user_id) % 7 = 3"
)

# (statement, error type, words the error must contain)
HOSTILE: list[tuple[str, type[ValueError], str]] = [
    ("INSERT INTO likes.like_events_raw (post_id) VALUES (1)", QueryRefused, "INSERT"),
    ("ALTER TABLE likes.like_events_raw DELETE WHERE 1", QueryRefused, "ALTER"),
    ("CREATE TABLE likes.x (a Int8) ENGINE = Memory", QueryRefused, "CREATE"),
    ("DROP TABLE likes.like_events_raw", QueryRefused, "DROP"),
    ("TRUNCATE TABLE likes.like_events_raw", QueryRefused, "TRUNCATE"),
    ("OPTIMIZE TABLE likes.like_events_raw FINAL", QueryRefused, "OPTIMIZE"),
    ("RENAME TABLE likes.like_events_raw TO likes.gone", QueryRefused, "RENAME"),
    ("SET readonly = 0", QueryRefused, "SET"),
    ("SYSTEM STOP MERGES likes.like_events_raw", QueryRefused, "SYSTEM"),
    ("KILL QUERY WHERE 1", QueryRefused, "KILL"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", QueryRefused, "file()"),
    ("SELECT * FROM url('http://127.0.0.1:1/x', CSV)", QueryRefused, "url()"),
    ("SELECT * FROM remote('127.0.0.1', system.one)", QueryRefused, "remote()"),
    ("SELECT file('/etc/hostname')", QueryRefused, "file()"),
    ("SELECT * FROM system.processes", QueryRefused, "not readable"),
    ("SELECT 1; DROP TABLE likes.like_events_raw", QueryRefused, "one statement"),
    ("SELECT 1; INSERT INTO likes.like_events_raw (post_id) VALUES (1)", QueryRefused, "INTO"),
    ("SELECT count() FROM likes.like_events SETTINGS readonly = 0", QueryRefused, "SETTINGS"),
    ("SELECT 1 INTO OUTFILE '/tmp/likes-out.tsv'", QueryRefused, "INTO"),
    ("SELECT * FROM likes.like_events WHERE", QueryRefused, "does not parse"),
    ("SELEC count() FROM likes.like_events", QueryRefused, "SELEC"),
    (f"SELECT a.user_id, b.user_id FROM {CROSS}", QueryRefused, "Limit for result exceeded"),
    (MINUTES_LONG, QueryRefused, "Timeout exceeded"),
    ("SELECT sleepEachRow(3) FROM likes.like_events_raw", QueryRefused, "maximum sleep time"),
    ("SELECT no_such_column FROM likes.like_events", QueryFailed, "no_such_column"),
    ("SELECT * FROM likes.no_such_table", QueryFailed, "no_such_table"),
    ("SELECT intDiv(post_id, 0) FROM likes.like_events", QueryFailed, "Division by zero"),
    ("SELECT throwIf(count() > 0, 'boom') FROM likes.like_events", QueryFailed, "boom"),
    ("DESCRIBE file('/etc/passwd')", QueryRefused, "DESCRIBE"),
    ("SELECT post_id IN system.users FROM likes.like_events", QueryRefused, "system.users"),
]


def _events(n: int) -> list[Sequence[Any]]:
    """``n`` fresh like events as the flow's sink writes them (unique ``event_id``s)."""
    now_ms = int(time.time() * 1000)
    return [
        event_row(Accepted(1 + i % 20, 10_000 + i, 1, 1, 1, now_ms - i, uuid.uuid4(), "like", None))
        for i in range(n)
    ]


def _seed(url: str) -> None:
    """Events, windows and hot episodes for the analyst queries to find."""
    clickhouse_store.insert(url, EVENTS, _events(3000), TABLES[EVENTS])
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    windows = [
        window_row(WindowPart(post, now_ms - m * 60_000, now_ms - (m - 1) * 60_000, "p0", 5, 1, 6))
        for post in range(1, 21)
        for m in range(1, 6)
    ]
    clickhouse_store.insert(
        url, "post_like_window_parts", windows, TABLES["post_like_window_parts"]
    )
    hot = [hot_row(HotChange(p, "hot", 9, 9, now_ms - 300_000, now_ms, None)) for p in (1, 2, 3)]
    clickhouse_store.insert(url, "hot_post_episodes", hot, TABLES["hot_post_episodes"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"chdb://{tmp_path_factory.mktemp('analytics') / 'store'}"
    clickhouse_store.ensure_schema(url)
    _seed(url)
    yield url
    clickhouse_store.close_all()  # later tests may open another store path


@pytest.fixture()
def reader(store: str) -> Iterator[AnalystReader]:
    r = AnalystReader(store, TEST_LIMITS)
    yield r
    r.close()


class Writer(threading.Thread):
    """Inserts events the way the flow's sink does, until told to stop."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="test-writer")
        self.url = url
        self.written: list[Sequence[Any]] = []
        self.errors: list[Exception] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rows = _events(50)
            try:
                clickhouse_store.insert(self.url, EVENTS, rows, TABLES[EVENTS])
            except Exception as e:
                self.errors.append(e)
            else:
                self.written.extend(rows)
            self._stop_event.wait(0.01)

    def finish(self) -> None:
        self._stop_event.set()
        self.join(30)


def _event_keys(reader: AnalystReader) -> set[tuple[str, int]]:
    _, rows = reader.query("SELECT toString(event_id), user_id FROM likes.like_events_raw")
    return {(r[0], r[1]) for r in rows}


def _writer_readonly(url: str) -> Any:
    return clickhouse_store.get_client(url).query("SELECT getSetting('readonly')").result_rows


def test_hostile_queries_fail_clearly_while_the_writer_never_does(
    store: str, reader: AnalystReader
) -> None:
    checker = AnalystReader(store, QueryLimits())
    before = _event_keys(checker)
    writer = Writer(store)
    writer.start()
    try:
        for sql, error_type, words in HOSTILE:
            started = time.monotonic()
            with pytest.raises(error_type) as failed:
                reader.query(sql)
            assert words in str(failed.value), (sql, str(failed.value))
            assert "\n" not in str(failed.value) and "Stack trace" not in str(failed.value)
            assert time.monotonic() - started < TEST_LIMITS.max_execution_time_s + 5, sql
    finally:
        writer.finish()
    assert writer.errors == []
    assert len(writer.written) > 0
    expected = before | {(str(r[0]), r[3]) for r in writer.written}
    assert _event_keys(checker) == expected
    _, [[count, user_sum]] = checker.query(
        "SELECT count(), sum(user_id) FROM likes.like_events_raw"
    )
    assert (count, user_sum) == (len(expected), sum(u for _, u in expected))
    assert reader.query("SELECT count() AS n FROM likes.like_events_raw") == (["n"], [[count]])
    assert _writer_readonly(store) == [(0,)]
    checker.close()


def test_after_thirty_failures_in_clickhouse_the_next_query_is_right(store: str) -> None:
    """A result overflow at the default 100 000 rows leaves blocks of the failed query on an
    embedded connection; reused, it answers the next query with them. The reader must not."""
    reader = AnalystReader(store, QueryLimits(max_execution_time_s=2))
    failing = [
        f"SELECT a.user_id, b.event_id FROM {CROSS}",
        "SELECT sleepEachRow(3) FROM likes.like_events_raw",
        f"SELECT a.post_id FROM {CROSS}",
        "SELECT intDiv(post_id, 0) FROM likes.like_events",
        "SELECT no_such_column FROM likes.like_events",
    ]
    truth = clickhouse_store.get_client(store).query(f"SELECT count() FROM likes.{EVENTS}")
    expected = (["n"], [[truth.result_rows[0][0]]])
    for i in range(30):
        with pytest.raises((QueryRefused, QueryFailed)):
            reader.query(failing[i % len(failing)])
        assert reader.query(f"SELECT count() AS n FROM likes.{EVENTS}") == expected
    reader.close()


def test_the_reader_session_is_its_own_and_readonly(store: str, reader: AnalystReader) -> None:
    columns, rows = reader.query(
        "SELECT getSetting('readonly') AS ro, getSetting('max_threads') AS threads,"
        " currentDatabase() AS db"
    )
    assert (columns, rows) == (["ro", "threads", "db"], [[2, 1, "likes"]])
    assert _writer_readonly(store) == [(0,)]


@pytest.mark.parametrize("sql", LEGIT, ids=[s[:60] for s in LEGIT])
def test_analyst_reads_run(store: str, sql: str) -> None:
    reader = AnalystReader(store)
    columns, rows = reader.query(sql)
    reader.close()
    assert columns and rows


def test_an_empty_result_still_names_its_columns(reader: AnalystReader) -> None:
    empty = reader.query("SELECT post_id, count() AS n FROM likes.like_events WHERE 0 GROUP BY 1")
    assert empty == (["post_id", "n"], [])


def test_server_errors_become_one_line_without_codes_or_versions() -> None:
    readonly = translate_error(
        DatabaseError(
            "HTTPDriver for http://ch:8123 received ClickHouse error code 164\n"
            " Code: 164. DB::Exception: default: Cannot execute query in readonly mode."
            " (READONLY) (version 24.3.1.1 (official build))\n"
        )
    )
    assert isinstance(readonly, QueryRefused)
    assert str(readonly) == (
        "query refused: default: Cannot execute query in readonly mode. (READONLY)"
    )
    stack = "Code: 62. DB::Exception: Syntax error\nStack trace:\n0. x"
    syntax = translate_error(DatabaseError(stack))
    assert (type(syntax), str(syntax)) == (QueryFailed, "query failed: Syntax error")


def test_a_missing_store_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(QueryFailed, match="no ClickHouse store"):
        AnalystReader(f"chdb://{missing}").query("SELECT 1")
    assert not missing.exists()


@pytest.fixture()
def server(store: str) -> Iterator[ServerHandle]:
    def write_repairs(rows: list[tuple[Any, ...]]) -> None:
        clickhouse_store.insert(store, "post_like_window_parts", rows, REPAIR_COLUMNS)

    handle = start_in_thread(store, 0, TEST_LIMITS, write_repairs=write_repairs)
    yield handle
    handle.stop()


def _post(handle: ServerHandle, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{handle.port}{path}", json=body, timeout=30)


def test_server_answers_queries_as_json(server: ServerHandle) -> None:
    sql = (
        "SELECT event_id, occurred_at, toDecimal64(1.5, 2) AS d, post_id"
        " FROM likes.like_events_raw LIMIT 3"
    )
    r = _post(server, "/query", {"sql": sql})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["event_id", "occurred_at", "d", "post_id"]
    assert len(body["rows"]) == 3
    event_id, occurred_at, d, post_id = body["rows"][0]
    assert uuid.UUID(event_id) and datetime.fromisoformat(occurred_at)
    assert (d, isinstance(post_id, int)) == ("1.50", True)


def test_server_refuses_with_400_and_the_reason(server: ServerHandle) -> None:
    r = _post(server, "/query", {"sql": "SELECT * FROM file('/etc/passwd', 'LineAsString')"})
    assert r.status_code == 400
    assert "table function file()" in r.json()["error"]
    not_json = httpx.post(f"http://127.0.0.1:{server.port}/query", content=b"SELECT 1")
    assert not_json.status_code == 400 and "sql" in not_json.json()["error"]


def _repair(part: str, likes: int = 1) -> list[Any]:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    return [77, start.isoformat(), (start + timedelta(minutes=1)).isoformat(), part, likes, 0, 1, 1]


def test_repairs_accept_only_repair_rows(server: ServerHandle) -> None:
    bad_part = _post(server, "/repairs/windows", [_repair("p0")])
    assert bad_part.status_code == 400 and "repair:" in bad_part.json()["error"]
    negative = _post(server, "/repairs/windows", [_repair(f"repair:{uuid.uuid4()}", likes=-1)])
    assert negative.status_code == 400
    part = f"repair:{uuid.uuid4()}"
    ok = _post(server, "/repairs/windows", [_repair(part)])
    assert ok.status_code == 200 and ok.json() == {"inserted": 1}
    sql = "SELECT part FROM likes.post_like_window_parts WHERE post_id = 77 ORDER BY part"
    rows = _post(server, "/query", {"sql": sql}).json()["rows"]
    assert [part] in rows and ["p0"] not in rows


def test_a_slow_query_does_not_block_the_server(server: ServerHandle) -> None:
    slow: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: slow.append(_post(server, "/query", {"sql": MINUTES_LONG}))
    )
    worker.start()
    time.sleep(0.3)
    started = time.monotonic()
    health = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
    assert health.status_code == 200 and time.monotonic() - started < 1.0
    worker.join(30)
    assert slow[0].status_code == 400 and "Timeout exceeded" in slow[0].json()["error"]


def test_server_in_a_thread_leaves_signals_alone_and_has_no_writer_route(store: str) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    handle = start_in_thread(store, 0, TEST_LIMITS)
    try:
        assert {s: signal.getsignal(s) for s in handlers} == handlers
        r = _post(handle, "/repairs/windows", [_repair(f"repair:{uuid.uuid4()}")])
        assert r.status_code == 404
    finally:
        handle.stop()
    assert not handle.thread.is_alive()
