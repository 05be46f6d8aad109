"""What a recorded backfill run covers of a dead letter (``ops.backfill_runs.coverage``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ops.backfill import REBUILT
from ops.backfill_runs import (
    EVENT_AGE_BOUND,
    MISSED_HEARTBEATS,
    BackfillRun,
    Coverage,
    _parse,
    coverage,
    trim_cutoff,
)

T = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DEAD_AT = T
OCCURRED = T - timedelta(seconds=3)


def run(
    minutes: float,
    *,
    since: datetime | None = None,
    projections: tuple[str, ...] = REBUILT,
    status: str = "done",
    ended: float | None = None,
) -> BackfillRun:
    ended_at = None if ended is None else T + timedelta(minutes=ended)
    return BackfillRun(T + timedelta(minutes=minutes), since, projections, status, ended_at)


def verdict(*runs: BackfillRun, occurred: datetime | None = OCCURRED) -> Coverage:
    return coverage(list(runs), DEAD_AT, occurred, REBUILT).coverage


def test_only_runs_started_after_the_dead_letter_count() -> None:
    assert verdict() is Coverage.NONE
    assert verdict(run(-1)) is Coverage.NONE, "a run before it could not have read it"
    assert verdict(run(-1), run(5)) is Coverage.COVERED


def test_a_run_covers_only_what_it_finished_and_read() -> None:
    assert verdict(run(5, status="running")) is Coverage.UNCERTAIN
    assert verdict(run(5, status="failed")) is Coverage.UNCERTAIN
    assert verdict(run(5, status="unsettled")) is Coverage.UNCERTAIN
    assert verdict(run(5, projections=("redis", "postgres"))) is Coverage.UNCERTAIN
    # two partial runs after it that together rebuilt everything
    rest = tuple(p for p in REBUILT if p not in ("redis", "postgres"))
    both = (run(5, projections=("redis", "postgres")), run(6, projections=rest))
    assert verdict(*both) is Coverage.COVERED


def test_since_covers_an_edge_changed_at_or_after_it() -> None:
    assert verdict(run(5, since=OCCURRED)) is Coverage.COVERED
    assert verdict(run(5, since=OCCURRED - timedelta(hours=1))) is Coverage.COVERED
    # changed before `since`: the post is read only if another edge of it changed since
    assert verdict(run(5, since=OCCURRED + timedelta(seconds=1))) is Coverage.UNCERTAIN
    assert verdict(run(5, since=OCCURRED), occurred=None) is Coverage.UNCERTAIN
    assert verdict(run(5), occurred=None) is Coverage.COVERED, "no since: every edge read"


def test_runs_are_trimmed_only_once_no_dead_letter_can_need_them() -> None:
    now = T + timedelta(days=30)
    bound = now - EVENT_AGE_BOUND - timedelta(hours=1)
    # no retained letter: only events still in likes.events can be dead-lettered from now
    assert trim_cutoff([], now) == bound
    # the oldest retained letter's commit holds the cutoff back (less an hour for clocks)
    assert trim_cutoff([T + timedelta(days=2), T], now) == T - timedelta(hours=1)
    # recent letters do not move it past the age bound of future letters' events
    assert trim_cutoff([now - timedelta(minutes=5)], now) == bound
    # a letter whose commit time is unknown may be older than any run: keep them all
    assert trim_cutoff([T, None], now) is None
    # the rule against coverage(): a run that ended before the cutoff matters to no
    # letter committed at or after it, whether it read the commit or was under way
    cutoff = trim_cutoff([OCCURRED], now)
    assert cutoff is not None
    for start, end in ((-120, -61), (-300, -200)):
        r = run(start, ended=end)
        assert r.ended_at is not None and r.ended_at < cutoff
        assert verdict(r) is Coverage.NONE
    assert verdict(run(-120, ended=1)) is Coverage.UNCERTAIN, "ended after the commit"


def test_a_run_that_read_the_edge_store_after_the_commit_covers_it() -> None:
    # started between the commit (T - 3 s) and the dead letter (T): it read the
    # transition, and the counts flow adopted it; a replay would count it twice
    assert verdict(run(-1 / 60, ended=1)) is Coverage.COVERED
    # without the commit time only runs after the dead letter are known to have read it
    assert verdict(run(-1 / 60, ended=1), occurred=None) is Coverage.UNCERTAIN, (
        "under way when the letter was written: it may have read the commit"
    )


def test_a_run_under_way_at_the_commit_may_have_read_it() -> None:
    # started before the commit, ended after it: it may have read the post either side
    assert verdict(run(-5, ended=2)) is Coverage.UNCERTAIN
    assert verdict(run(-5, status="running")) is Coverage.UNCERTAIN
    # ended before the commit: it could not have read it
    assert verdict(run(-5, ended=-1)) is Coverage.NONE
    # a later run that read it settles it whatever the earlier one did
    assert verdict(run(-5, ended=2), run(5, ended=6)) is Coverage.COVERED
    # recorded before runs had ends: judged by their start, as then
    assert verdict(run(-5)) is Coverage.NONE


def test_runs_round_trip_with_their_end() -> None:
    r = run(-5, ended=2)
    assert _parse(json.dumps(r.to_json())) == r
    old = {k: v for k, v in run(-5).to_json().items() if k != "ended_at"}
    assert _parse(json.dumps(old)) == run(-5)


def test_a_running_run_whose_heartbeats_stopped_died_one_heartbeat_after_its_last() -> None:
    beat = timedelta(seconds=10)
    last = T - timedelta(minutes=20)
    killed = BackfillRun(T - timedelta(minutes=30), None, REBUILT, "running", None, last)
    assert killed.judged(last + MISSED_HEARTBEATS * beat, beat) == killed, "not yet missed"
    died = killed.judged(T, beat)
    assert (died.status, died.ended_at) == ("died", last + beat)
    # a letter committed after it died is not held up by it; one before stays uncertain
    assert verdict(died) is Coverage.NONE
    assert verdict(killed) is Coverage.UNCERTAIN, "read as running, it held every letter"
    assert verdict(died, occurred=last - timedelta(minutes=1)) is Coverage.UNCERTAIN
    # only running runs die; one recorded before heartbeats stays running
    assert run(-40, ended=-35).judged(T, beat) == run(-40, ended=-35)
    legacy = run(-40, status="running")
    assert legacy.judged(T, beat) == legacy
    assert _parse(json.dumps(killed.to_json())) == killed
