"""Read-only SQL over HTTP for an embedded chDB store, served by the process that owns it.

chDB admits one process per data path, and the counts flow writes it; so that process
also answers ``likes analytics query`` on ``127.0.0.1:<analytics_port>``: ``POST /query``
with the SQL as body, answered as JSON ``{"columns": [...], "rows": [[...], ...]}``.
Queries run with ClickHouse's ``readonly=1``: they cannot change anything.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sinks import clickhouse_store

log = logging.getLogger(__name__)


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
