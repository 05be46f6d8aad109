"""Read-only SQL over HTTP for an embedded chDB store, served by the process that owns it.

chDB admits one process per data path, and the counts flow writes it; so that process
also answers ``likes analytics query`` on ``127.0.0.1:<analytics_port>``: ``POST /query``
with the SQL as body, answered as JSON ``{"columns": [...], "rows": [[...], ...]}``.
Queries run with ClickHouse's ``readonly=1``: they cannot change anything. The one
write it accepts is ``POST /repair/windows``: correction rows from ``likes reconcile``.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sinks import clickhouse_store

log = logging.getLogger(__name__)


_REPAIR_COLUMNS = ["post_id", "window_start", "window_end", "part", "likes", "unlikes", "version"]


def _repair_row(r: list[Any]) -> tuple[Any, ...]:
    """A correction window row; only ``repair:`` parts may be written this way."""
    post, start, end, part, likes, unlikes, version = r
    if not str(part).startswith("repair:"):
        raise ValueError("only repair rows may be written")
    return (
        int(post),
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        str(part),
        int(likes),
        int(unlikes),
        int(version),
    )


def post_repairs(port: int, rows: list[tuple[Any, ...]]) -> bool:
    """Send correction rows to the owning process; False if none listens."""
    body = json.dumps([[*r[:1], r[1].isoformat(), r[2].isoformat(), *r[3:]] for r in rows])
    try:
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{port}/repair/windows", data=body.encode(), method="POST"
            ),
            timeout=60,
        ) as resp:
            return bool(resp.status == 200)
    except urllib.error.URLError:
        return False


def _handler(url: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path == "/repair/windows":
                self._repair()
                return
            if self.path != "/query":
                self._send(404, {"error": "POST /query"})
                return
            sql = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            try:
                columns, rows = clickhouse_store.query_readonly(url, sql)
            except Exception as e:
                self._send(400, {"error": str(e).splitlines()[0][:2000]})
                return
            self._send(200, {"columns": columns, "rows": [list(r) for r in rows]})

        def _repair(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                rows = [_repair_row(r) for r in json.loads(body)]
                clickhouse_store.insert(url, "post_like_window_parts", rows, _REPAIR_COLUMNS)
            except (ValueError, KeyError, TypeError) as e:
                self._send(400, {"error": str(e)})
                return
            self._send(200, {"inserted": len(rows)})

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return Handler


def serve_if_embedded(url: str, port: int) -> ThreadingHTTPServer | None:
    """Serve queries for ``url`` in a daemon thread when it is embedded chDB."""
    if not clickhouse_store.is_embedded(url):
        return None
    clickhouse_store.ensure_schema(url)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(url))
    threading.Thread(target=server.serve_forever, daemon=True, name="analytics").start()
    return server
