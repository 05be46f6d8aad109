"""Opaque keyset cursors: ``(timestamp, id)`` of the last item of a page."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from ingest_api.problems import ProblemError


def encode(ts: datetime, item_id: int) -> str:
    """The cursor continuing after ``(ts, item_id)``."""
    raw = json.dumps([ts.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None) -> tuple[datetime, int] | None:
    """The position a cursor names, or a 422 problem for a malformed one."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, item_id = json.loads(raw)
        return datetime.fromisoformat(ts), int(item_id)
    except (ValueError, TypeError) as e:
        raise ProblemError(422, "malformed cursor") from e


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
