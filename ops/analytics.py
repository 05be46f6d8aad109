"""``likes analytics query``: read-only SQL on ClickHouse, embedded or server.

With embedded chDB the counts flow process owns the data path, so a query goes to its
analytics endpoint; when no flow runs, the store is opened directly. A server URL is
queried directly. Either way ClickHouse runs the query with ``readonly=1``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from core.settings import CommonSettings
from sinks import clickhouse_store


def _via_owner(s: CommonSettings, sql: str) -> tuple[list[str], list[Any]] | None:
    try:
        r = httpx.post(
            f"http://127.0.0.1:{s.analytics_port}/query", content=sql.encode(), timeout=120
        )
    except httpx.ConnectError:
        return None
    body = r.json()
    if r.status_code != 200:
        raise ValueError(body.get("error", r.text))
    return body["columns"], body["rows"]


def query(s: CommonSettings, sql: str) -> tuple[list[str], list[Any]]:
    """Column names and rows of ``sql``."""
    url = s.effective_clickhouse_url
    if clickhouse_store.is_embedded(url):
        owned = _via_owner(s, sql)
        if owned is not None:
            return owned
        clickhouse_store.ensure_schema(url)
    try:
        columns, rows = clickhouse_store.query_readonly(url, sql)
    except Exception as e:
        raise ValueError(str(e).splitlines()[0]) from e
    return columns, [list(r) for r in rows]


def print_rows(columns: list[str], rows: list[Any], *, as_json: bool) -> None:
    """A JSON array of row objects, or a tab-separated table."""
    if as_json:
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
        return
    print("\t".join(columns))
    for r in rows:
        print("\t".join(str(v) for v in r))
