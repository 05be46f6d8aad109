"""Analyst queries on ClickHouse that can neither change data nor disturb the pipeline's writers.

Guarantees of ``AnalystReader.query``:

- Only statements ``check_query`` returns reach ClickHouse, and they run on a connection
  that belongs to this reader alone, opened with ``readonly=2`` on database ``likes``:
  no query can write, and no query can change a session a writer uses.
- Every query runs under ``QueryLimits`` (wall time, result rows, memory, threads);
  a query over a limit fails with ``QueryRefused``, it never returns a cut-off result.
- ClickHouse's errors come back as ``QueryRefused`` (a limit or permission) or
  ``QueryFailed`` (anything else), carrying one line of its message. After any error
  the connection is dropped and the next query opens a fresh one, so a failed query
  never leaves state behind for the next.
- Queries on one reader run one at a time; an embedded store must already exist
  (the writer side creates it and its schema).
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from analytics.sql_guard import DATABASE, QueryRefused, check_query
from sinks.clickhouse_store import connect, is_embedded

# readonly=2: reads only, yet each query may still carry its own limits.
SESSION_SETTINGS: dict[str, Any] = {"readonly": 2}

# ClickHouse error names that mean "not allowed" or "over a limit", not a broken query.
REFUSAL_ERRORS = frozenset(
    {
        "READONLY",
        "ACCESS_DENIED",
        "TIMEOUT_EXCEEDED",
        "TOO_SLOW",
        "TOO_MANY_ROWS",
        "TOO_MANY_BYTES",
        "TOO_MANY_ROWS_OR_BYTES",
        "MEMORY_LIMIT_EXCEEDED",
        "QUERY_WAS_CANCELLED",
    }
)

_ERROR_NAME = re.compile(r"\(([A-Z][A-Z_]+)\)\s*$")
_CODE_PREFIX = re.compile(r"^(?:Code: \d+\. DB::Exception: )+")
_VERSION_SUFFIX = re.compile(r"\s*\(version [^()]*(?:\([^()]*\))?[^()]*\)")


@dataclass(frozen=True)
class QueryLimits:
    """Ceilings for one analyst query; exceeding one fails the query."""

    max_execution_time_s: int = 10
    max_result_rows: int = 100_000
    max_memory_bytes: int = 512 * 1024 * 1024
    max_threads: int = 1

    def settings(self) -> dict[str, Any]:
        """The limits as ClickHouse query settings."""
        return {
            "max_execution_time": self.max_execution_time_s,
            "max_result_rows": self.max_result_rows,
            "result_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_bytes,
            "max_threads": self.max_threads,
        }


class QueryFailed(ValueError):
    """A checked query that ClickHouse could not run."""


class AnalystReader:
    """Read-only, limited SQL on the ClickHouse store at ``url`` (``chdb://`` or ``http(s)://``)."""

    def __init__(self, url: str, limits: QueryLimits | None = None) -> None:
        self.url = url
        self.limits = limits or QueryLimits()
        self._client: Client | None = None
        self._lock = threading.Lock()

    def query(self, sql: str) -> tuple[list[str], list[list[Any]]]:
        """Column names and rows of ``sql``."""
        statement = check_query(sql)
        with self._lock:
            try:
                client = self._connected()
                result = client.query(statement, settings=self.limits.settings())
                rows = [list(row) for row in result.result_rows]
                columns = list(result.column_names) or self._columns(client, statement)
                return columns, rows
            except (QueryRefused, QueryFailed):
                raise
            except Exception as e:
                self._discard()
                raise translate_error(e) from None

    def close(self) -> None:
        """Drop the connection (a later query opens a new one)."""
        with self._lock:
            self._discard()

    def _columns(self, client: Client, statement: str) -> list[str]:
        """Column names of a query that returned no rows (embedded chDB sends none then)."""
        if statement.startswith("DESCRIBE"):
            return []
        described = client.query(f"DESCRIBE ({statement})", settings=self.limits.settings())
        return [str(row[0]) for row in described.result_rows]

    def _connected(self) -> Client:
        if self._client is None:
            self._client = open_reader_client(self.url)
        return self._client

    def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # it is dropped because it may be broken
                client.close()


def open_reader_client(url: str) -> Client:
    """A new read-only client of its own on ``url``, defaulting to database ``likes``."""
    if is_embedded(url):
        path = Path(url.removeprefix("chdb://"))
        if not path.is_dir():
            raise QueryFailed(f"no ClickHouse store at {path}: the analytics flow creates it")
    client = connect(url, settings=dict(SESSION_SETTINGS))
    client.database = DATABASE
    return client


def translate_error(error: Exception) -> QueryRefused | QueryFailed:
    """``QueryRefused`` for a limit or permission error, else ``QueryFailed``; one line."""
    line = error_line(str(error))
    name = getattr(error, "name", None)
    if name is None:
        found = _ERROR_NAME.search(line)
        name = found.group(1) if found else None
    if name in REFUSAL_ERRORS:
        return QueryRefused(line)
    return QueryFailed(f"query failed: {line}" if line else f"query failed: {type(error).__name__}")


def error_line(message: str) -> str:
    """The line of a ClickHouse error that says what went wrong, without codes or versions."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    line = next((ln for ln in lines if "DB::Exception" in ln), lines[0] if lines else "")
    line = _VERSION_SUFFIX.sub("", _CODE_PREFIX.sub("", line))
    return line[:500]
