"""Opaque keyset cursors: ``(timestamp, id)`` of the last item of a page."""

from __future__ import annotations

import base64
import json
from datetime import datetime

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
