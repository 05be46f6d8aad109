"""Analyst SQL over HTTP on 127.0.0.1, plus the one correction write ``likes reconcile`` needs.

Guarantees:

- ``POST /query`` (``{"sql": "..."}``) runs SQL only through an ``AnalystReader``:
  checked, read-only, limited, on a connection of its own. It answers 200 with
  ``{"columns": [...], "rows": [[...], ...]}`` (every value JSON-safe: times as ISO 8601,
  UUIDs, decimals and other values as strings) or 400 with ``{"error": "..."}``.
- Queries run on worker threads: a slow query never stalls the server's event loop.
- ``POST /repairs/windows`` writes only correction window rows that validate (non-negative
  integers, ``part`` starting ``repair:``, a window that ends after it starts), and only
  through the writer the owning process passes in; without one the route does not exist.
- ``POST /erasures`` (``{"user_id": N}``, a positive 64-bit id) anonymizes that user's
  ``like_events`` rows through the eraser the owning process passes in, answering
  ``{"remaining": rows still carrying the id}``; without one the route does not exist.
- ``start_in_thread`` serves on a daemon thread and installs no signal handlers, so it
  can run beside a dataflow that owns the main thread and its signals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from typing import Annotated, Any

import uvicorn
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from analytics.reader import AnalystReader, QueryFailed, QueryLimits
from analytics.sql_guard import QueryRefused
from sinks.clickhouse_sinks import TABLES

log = logging.getLogger(__name__)

REPAIR_COLUMNS = [*TABLES["post_like_window_parts"], "transitions"]
RepairWriter = Callable[[list[tuple[Any, ...]]], None]
UserEraser = Callable[[int], int]
"""Anonymizes a user's ``like_events`` rows; returns the rows still carrying the id."""
"""Inserts correction rows (values in ``REPAIR_COLUMNS`` order) into ``post_like_window_parts``."""


def _repair_part(part: str) -> str:
    if not part.startswith("repair:"):
        raise ValueError("part must start with 'repair:': only correction rows are written here")
    return part


Count = Annotated[int, Field(strict=True, ge=0)]


class RepairWindow(BaseModel):
    """One correction row, sent as a JSON list in ``REPAIR_COLUMNS`` order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    post_id: Count
    window_start: AwareDatetime
    window_end: AwareDatetime
    part: Annotated[str, AfterValidator(_repair_part)]
    likes: Count
    unlikes: Count
    version: Count
    transitions: Annotated[int, Field(strict=True)]

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"a repair row is a list: {', '.join(REPAIR_COLUMNS)}")
        if len(value) != len(REPAIR_COLUMNS):
            raise ValueError(f"a repair row has {len(REPAIR_COLUMNS)} values, not {len(value)}")
        return dict(zip(REPAIR_COLUMNS, value, strict=True))

    @model_validator(mode="after")
    def _window_ends_after_start(self) -> RepairWindow:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self

    def row(self) -> tuple[Any, ...]:
        """The values in ``REPAIR_COLUMNS`` order."""
        return tuple(getattr(self, c) for c in REPAIR_COLUMNS)


class ErasureBody(BaseModel):
    """``POST /erasures`` body."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[int, Field(strict=True, gt=0, lt=2**63)]


class QueryBody(BaseModel):
    """``POST /query`` body."""

    model_config = ConfigDict(extra="forbid")

    sql: str


_REPAIRS = TypeAdapter(list[RepairWindow])


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot carry as itself turned into a string."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(error: ValidationError) -> str:
    parts = []
    for e in error.errors()[:5]:
        where = " ".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}" if where else str(e["msg"]))
    return "; ".join(parts)


def build_app(
    reader: AnalystReader,
    write_repairs: RepairWriter | None = None,
    erase_user: UserEraser | None = None,
) -> Starlette:
    """The HTTP application: queries through ``reader``, repairs through ``write_repairs``,
    erasures through ``erase_user``."""

    async def query(request: Request) -> Response:
        try:
            body = QueryBody.model_validate_json(await request.body())
        except ValidationError:
            return _error(400, 'the body must be JSON {"sql": "..."}')
        try:
            columns, rows = await run_in_threadpool(reader.query, body.sql)
        except (QueryRefused, QueryFailed) as e:
            return _error(400, str(e))
        return JSONResponse({"columns": columns, "rows": json_safe(rows)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/query", query, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if write_repairs is not None:
        routes.append(Route("/repairs/windows", _repairs_route(write_repairs), methods=["POST"]))
    if erase_user is not None:
        routes.append(Route("/erasures", _erasure_route(erase_user), methods=["POST"]))
    return Starlette(routes=routes)


def _erasure_route(erase_user: UserEraser) -> Callable[[Request], Any]:
    async def erasures(request: Request) -> Response:
        try:
            body = ErasureBody.model_validate_json(await request.body())
        except ValidationError as e:
            return _error(400, _validation_message(e))
        try:
            remaining = await run_in_threadpool(erase_user, body.user_id)
        except Exception as e:
            log.exception("erasing user %d failed", body.user_id)
            return _error(500, f"erasure failed: {str(e).splitlines()[0][:300]}")
        return JSONResponse({"user_id": body.user_id, "remaining": remaining})

    return erasures


def _repairs_route(write_repairs: RepairWriter) -> Callable[[Request], Any]:
    async def repairs(request: Request) -> Response:
        try:
            windows = _REPAIRS.validate_json(await request.body())
        except ValidationError as e:
            return _error(400, _validation_message(e))
        rows = [w.row() for w in windows]
        try:
            await run_in_threadpool(write_repairs, rows)
        except Exception as e:
            log.exception("writing %d repair rows failed", len(rows))
            return _error(500, f"writing repair rows failed: {str(e).splitlines()[0][:300]}")
        return JSONResponse({"inserted": len(rows)})

    return repairs


@dataclass
class ServerHandle:
    """A running analytics server."""

    server: uvicorn.Server
    thread: threading.Thread
    reader: AnalystReader

    @property
    def port(self) -> int:
        """The port it listens on (useful when started on port 0)."""
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop serving, wait for the thread, close the reader's connection."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.reader.close()


def start_in_thread(
    url: str,
    port: int,
    limits: QueryLimits | None = None,
    write_repairs: RepairWriter | None = None,
    erase_user: UserEraser | None = None,
    *,
    startup_timeout_s: float = 10.0,
) -> ServerHandle:
    """Serve the store at ``url`` on ``127.0.0.1:port`` from a daemon thread, once listening."""
    reader = AnalystReader(url, limits)
    config = uvicorn.Config(
        build_app(reader, write_repairs, erase_user),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="analytics-http")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            reader.close()
            raise RuntimeError(f"the analytics server did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    return ServerHandle(server, thread, reader)
