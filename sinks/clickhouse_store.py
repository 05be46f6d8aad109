"""ClickHouse access for the writers: embedded chDB or a server, one client per process.

chDB admits one process per data path; within it the writers (the sinks, the schema,
repair rows) share one client, serialized by a lock. Analysts never use it: they get a
read-only connection of their own (``analytics.reader``), so nothing they run can
change this client's session. A server URL (``http(s)://``) gets an ordinary
clickhouse-connect client.
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


def connect(url: str, settings: dict[str, Any] | None = None) -> Client:
    """A new client of its own for ``url`` (``settings`` apply to its session only)."""
    if is_embedded(url):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=url, settings=settings)
    parts = urlsplit(url)
    return clickhouse_connect.get_client(
        host=parts.hostname or "localhost",
        port=parts.port or 8123,
        username=parts.username or "default",
        password=parts.password or "",
        secure=parts.scheme == "https",
        settings=settings,
    )


def get_client(url: str) -> Client:
    """The process's client for ``url`` (created on first use)."""
    with _guard:
        if url not in _clients:
            _clients[url] = connect(url)
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


def close_all() -> None:
    """Close the process's writer clients (chDB admits one store path per process: a
    test that opens another path closes these first)."""
    with _guard:
        for client in _clients.values():
            client.close()
        _clients.clear()
