"""Erasure job records and their report, without services."""

from __future__ import annotations

from datetime import UTC, datetime

from ops.erasure import STEPS, Job, render
from schemas.erasure import JOB_COLUMNS


def _row(**over: object) -> tuple[object, ...]:
    base: dict[str, object] = {
        "job_id": "6f1c1f4e-8d5c-4b53-9a3e-0c2f4f3b9a10",
        "user_id": 42,
        "requested_by": "self",
        "status": "failed",
        "attempts": 2,
        "progress": {"fence": {"waited_ms": 3}, "edge_store": {"retracted": 7, "remaining": 0}},
        "error": "ErasureIncomplete: flow fanout has not processed the retractions",
        "created_at": datetime(2026, 12, 3, 21, 0, tzinfo=UTC),
        "started_at": None,
        "finished_at": None,
    }
    base.update(over)
    return tuple(base[c] for c in JOB_COLUMNS)


def test_a_job_row_round_trips_to_json() -> None:
    job = Job.from_row(_row())
    d = job.as_dict()
    assert d["job_id"] == "6f1c1f4e-8d5c-4b53-9a3e-0c2f4f3b9a10" and d["user_id"] == 42
    assert d["created_at"] == "2026-12-03T21:00:00+00:00" and d["started_at"] is None
    assert d["progress"]["edge_store"] == {"retracted": 7, "remaining": 0}


def test_the_report_names_every_step_and_the_error() -> None:
    text = render(Job.from_row(_row()))
    for name, _ in STEPS:
        assert name in text
    assert "retracted 7" in text and "not run" in text
    assert "flow fanout has not processed" in text
    assert "failed" in text.splitlines()[0] or "failed" in text


def test_steps_run_in_the_documented_order() -> None:
    names = [n for n, _ in STEPS]
    assert names[:3] == ["fence", "edge_store", "pipeline"], "retract only after the fence"
    assert names.index("notifications") > names.index("pipeline")
    assert names[-1] == "verify"


def test_what_a_killed_run_removed_still_counts() -> None:
    from ops.erasure import _merge

    earlier = {"retracted": 500, "remaining": 12}
    assert _merge(earlier, {"retracted": 12, "remaining": 0}) == {
        "retracted": 512,
        "remaining": 0,
    }
    assert _merge({}, {"deleted": 3}) == {"deleted": 3}
