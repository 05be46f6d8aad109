"""Event models: what is accepted at the edge of a flow, and what is rejected."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.events import HotPostEvent, LikeEvent, rfc3339

GOOD: dict[str, Any] = {
    "event_id": str(uuid.uuid4()),
    "action": "LikeCreated",
    "post_id": 1,
    "user_id": 2,
    "edge_version": 1,
    "occurred_at": "2026-11-21T10:00:00.123456Z",
    "idempotency_key": None,
}


def test_valid_event_round_trips() -> None:
    ev = LikeEvent.model_validate_json(json.dumps(GOOD))
    assert ev.liked and ev.occurred_ms == 1795255200123
    assert json.loads(ev.model_dump_json())["occurred_at"] == "2026-11-21T10:00:00.123456Z"
    with pytest.raises(ValidationError):
        ev.post_id = 5  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    "change",
    [
        {"action": "Liked"},
        {"post_id": 0},
        {"post_id": "1"},
        {"user_id": -1},
        {"edge_version": 0},
        {"post_id": 2**63},
        {"occurred_at": "2026-11-21T10:00:00"},
        {"event_id": "nope"},
        {"occurred_at": None},
    ],
)
def test_invalid_events_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LikeEvent.model_validate_json(json.dumps({**GOOD, **change}))


def test_missing_field_is_rejected() -> None:
    bad = dict(GOOD)
    del bad["edge_version"]
    with pytest.raises(ValidationError):
        LikeEvent.model_validate_json(json.dumps(bad))


def test_hot_event_and_timestamps() -> None:
    t = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    ev = HotPostEvent(
        post_id=3, state="hot", rate=150, window_seconds=60, became_hot_at=t, at=t, peak_rate=150
    )
    assert json.loads(ev.model_dump_json())["at"] == "2026-11-21T10:00:00.000000Z"
    assert rfc3339(t) == "2026-11-21T10:00:00.000000Z"
