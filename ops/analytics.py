"""``likes analytics query``: read-only SQL on ClickHouse, embedded or server, while the
system runs; and the correction rows ``likes reconcile`` writes.

Guarantee: an analyst's SQL reaches ClickHouse only through ``analytics.reader`` (a
statement allow-list, then a read-only connection of its own with time, memory and
result limits), so no query, however hostile, slow or malformed, can change what the
pipeline's writers see. With embedded chDB the analytics flow's process owns the store
and answers on ``127.0.0.1:<analytics_port>``; when it does not run, the store is opened
here.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import httpx

from analytics.reader import AnalystReader, QueryFailed
from analytics.server import REPAIR_COLUMNS
from analytics.sql_guard import QueryRefused
from core.settings import CommonSettings
from sinks import clickhouse_erasure, clickhouse_store


def _owner(s: CommonSettings, path: str, body: Any, timeout: float) -> httpx.Response | None:
    """POST to the process that owns the embedded store; None when none listens."""
    try:
        return httpx.post(f"http://127.0.0.1:{s.analytics_port}{path}", json=body, timeout=timeout)
    except httpx.ConnectError:
        return None


def query(s: CommonSettings, sql: str) -> tuple[list[str], list[Any]]:
    """Column names and rows of ``sql``; ``ValueError`` with a clear message when refused."""
    url = s.effective_clickhouse_url
    if clickhouse_store.is_embedded(url):
        r = _owner(s, "/query", {"sql": sql}, timeout=120)
        if r is not None:
            body = r.json()
            if r.status_code != 200:
                raise ValueError(body.get("error", r.text))
            return body["columns"], body["rows"]
        clickhouse_store.ensure_schema(url)  # no flow runs: this process is the owner
    reader = AnalystReader(url)
    try:
        return reader.query(sql)
    except (QueryRefused, QueryFailed) as e:
        raise ValueError(str(e)) from e
    finally:
        reader.close()


def write_window_repairs(s: CommonSettings, rows: list[tuple[Any, ...]]) -> None:
    """Insert correction window rows (``REPAIR_COLUMNS`` order, parts ``repair:*``)."""
    if not rows:
        return
    url = s.effective_clickhouse_url
    if clickhouse_store.is_embedded(url):
        body = [[*r[:1], _iso(r[1]), _iso(r[2]), *r[3:]] for r in rows]
        r = _owner(s, "/repairs/windows", body, timeout=60)
        if r is not None:
            if r.status_code != 200:
                raise ValueError(r.json().get("error", r.text))
            return
        clickhouse_store.ensure_schema(url)
    clickhouse_store.insert(url, "post_like_window_parts", rows, REPAIR_COLUMNS)


def erase_user(s: CommonSettings, user_id: int) -> int:
    """Anonymize ``user_id``'s ``like_events`` rows (``sinks.clickhouse_erasure``); the
    rows still carrying the id (0 when done)."""
    url = s.effective_clickhouse_url
    if clickhouse_store.is_embedded(url):
        r = _owner(s, "/erasures", {"user_id": user_id}, timeout=300)
        if r is not None:
            if r.status_code != 200:
                raise ValueError(r.json().get("error", r.text))
            return int(r.json()["remaining"])
        clickhouse_store.ensure_schema(url)  # no flow runs: this process is the owner
        return clickhouse_erasure.erase_user(url, user_id)
    # a server: the writers in other processes see the erased set within its TTL
    clickhouse_store.ensure_schema(url)
    client = clickhouse_store.get_client(url)
    with clickhouse_store.LOCK:
        client.command(
            "INSERT INTO likes.erased_users SELECT {u:UInt64}, now64(3)",
            parameters={"u": user_id},
        )
    time.sleep(clickhouse_erasure.ERASED_TTL_S + 1)
    return clickhouse_erasure.erase_user(url, user_id)


def _iso(t: datetime) -> str:
    return t.isoformat()


def print_rows(columns: list[str], rows: list[Any], *, as_json: bool) -> None:
    """A JSON array of row objects, or a tab-separated table."""
    if as_json:
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
        return
    print("\t".join(columns))
    for r in rows:
        print("\t".join(str(v) for v in r))
