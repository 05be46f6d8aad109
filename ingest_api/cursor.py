"""Opaque keyset cursors: ``(timestamp, id)`` of the last item of a page.

A cursor is ``<microseconds since the epoch>.<id>``, both in lowercase hex. The format
is exactly :data:`PATTERN`, which the OpenAPI document publishes: every string matching
it names a valid position (a timestamp before the year 4250, an id that fits a
``bigint``), anything else is a 422 problem. An empty cursor is the first page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from ingest_api.problems import ProblemError

PATTERN = r"^(?:[0-9a-f]{1,14}\.[0-7]?[0-9a-f]{1,15})?$"
MAX_LENGTH = 31
_RE = re.compile(PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def encode(ts: datetime, item_id: int) -> str:
    """The cursor continuing after ``(ts, item_id)``."""
    return f"{(ts - _EPOCH) // _MICRO:x}.{item_id:x}"


def decode(cursor: str | None) -> tuple[datetime, int] | None:
    """The position a cursor names (None: from the start), or a 422 problem."""
    if not cursor:
        return None
    if not _RE.fullmatch(cursor):
        raise ProblemError(422, "malformed cursor")
    ts, item_id = cursor.split(".")
    return _EPOCH + int(ts, 16) * _MICRO, int(item_id, 16)


async def keyset_page(
    conn: AsyncConnection,
    sql: str,
    key: object,
    limit: int,
    cursor: str | None,
    ts_col: int,
    id_col: int,
) -> tuple[list[tuple[Any, ...]], str | None]:
    """One page of ``sql`` (params: key, ts, ts, id, limit) and the cursor of the next.

    ``sql`` orders by ``(timestamp, id) DESC`` and filters ``(timestamp, id) < cursor``;
    ``ts_col``/``id_col`` say where those are in a row.
    """
    pos = decode(cursor)
    ts, last = pos if pos else (None, None)
    rows = await (await conn.execute(sql, (key, ts, ts, last, limit + 1))).fetchall()
    page = [tuple(r) for r in rows[:limit]]
    nxt = encode(page[-1][ts_col], page[-1][id_col]) if len(rows) > limit else None
    return page, nxt
