"""ClickHouse access for sinks and queries: embedded chDB or a server, one client per process.

chDB admits one process per data path, so within a process every user of a ``chdb://``
URL shares one client, serialized by a lock. A server URL (``http(s)://``) gets an
ordinary clickhouse-connect client.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

DDL_FILE = Path(__file__).resolve().parents[1] / "schemas" / "clickhouse.sql"
_clients: dict[str, Client] = {}
_guard = threading.Lock()
LOCK = threading.RLock()


def is_embedded(url: str) -> bool:
    """True for an embedded chDB URL."""
    return url.startswith("chdb://")


def _connect(url: str) -> Client:
    if is_embedded(url):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=url)
    parts = urlsplit(url)
    return clickhouse_connect.get_client(
        host=parts.hostname or "localhost",
        port=parts.port or 8123,
        username=parts.username or "default",
        password=parts.password or "",
        secure=parts.scheme == "https",
    )


def get_client(url: str) -> Client:
    """The process's client for ``url`` (created on first use)."""
    with _guard:
        if url not in _clients:
            _clients[url] = _connect(url)
        return _clients[url]


def ensure_schema(url: str) -> None:
    """Create the database, tables and views if missing (idempotent)."""
    client = get_client(url)
    text = "\n".join(ln for ln in DDL_FILE.read_text().splitlines() if not ln.startswith("--"))
    with LOCK:
        for stmt in (s.strip() for s in text.split(";")):
            if stmt:
                client.command(stmt)


def insert(url: str, table: str, rows: Sequence[Sequence[Any]], columns: list[str]) -> None:
    """Insert ``rows`` into ``likes.<table>``."""
    if rows:
        with LOCK:
            get_client(url).insert(f"likes.{table}", list(rows), column_names=columns)


def query_readonly(url: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of a read-only query."""
    with LOCK:
        result = get_client(url).query(sql, settings={"readonly": 1})
    return list(result.column_names), [tuple(r) for r in result.result_rows]
