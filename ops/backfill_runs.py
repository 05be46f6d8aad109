"""The record of ``likes backfill`` runs, and what a run already covers.

A backfill reads the edge store, so every transition committed before it started is in
what it rebuilt, and the counts flow adopts that truth (flow-state records). A dead
letter is a transition the flows never applied, but the edge store committed it before
the flow saw it: a backfill that read it has already put its effect in every projection
it rebuilt, and replaying it then would count it a second time. ``likes dlq replay``
asks :func:`coverage` before sending.

Guarantees: a run is recorded (Redis hash :data:`BACKFILL_RUNS_KEY`, field = its start
time) before it reads anything, and marked ``done`` (with its end time) only after every
projection was written. A run that started after the transition was committed read it;
one that was under way when it was committed may or may not have read it, and counts as
uncertain, as does one that is still ``running`` or ended otherwise: never as covering.
A run is forgotten only once no retained dead letter can need it (:func:`trim`, by
``likes dlq replay``). A running backfill refreshes its record every heartbeat
(``LIKES_BACKFILL_HEARTBEAT_S``); one whose record went :data:`MISSED_HEARTBEATS`
heartbeats without it (killed, its host lost) is read as ``died``, ended one heartbeat
after its last: it never covers a letter, and letters committed after it ended are no
longer held up by it (a killed run left "running" used to make every later letter
uncertain for good). Recording is best effort: when Redis is down the backfill still
runs (and logs that replays cannot see it). Times come from two clocks (the edge
store's for a commit, the backfill host's for a run), so the order of a commit and a
run that started within the clocks' difference of it is only as good as their sync.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import redis

from core.settings import CommonSettings
from schemas.redis_keys import BACKFILL_RUNS_KEY

log = logging.getLogger(__name__)
MISSED_HEARTBEATS = 6


@dataclass(frozen=True)
class BackfillRun:
    """One recorded run."""

    started_at: datetime
    since: datetime | None
    projections: tuple[str, ...]
    status: str  # running, done, unsettled (ClickHouse posts left unjudged), failed, died
    ended_at: datetime | None = None  # None: running, or recorded before ends were
    heartbeat_at: datetime | None = None  # None: recorded before heartbeats were

    def judged(self, now: datetime, heartbeat: timedelta) -> BackfillRun:
        """This run, or ``died`` if it is ``running`` but its heartbeats stopped."""
        last = self.heartbeat_at
        if self.status != "running" or last is None or now - last <= MISSED_HEARTBEATS * heartbeat:
            return self
        return replace(self, status="died", ended_at=last + heartbeat)

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "projections": list(self.projections),
            "status": self.status,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None,
        }


def client(s: CommonSettings) -> redis.Redis:
    """The operators' Redis client (text replies, 10 s timeout); ``likes dlq`` uses it too."""
    return redis.Redis.from_url(s.redis_url, socket_timeout=10, decode_responses=True)


def record(s: CommonSettings, run: BackfillRun) -> None:
    """Write (or update) ``run``; a Redis failure is logged, not raised."""
    try:
        client(s).hset(BACKFILL_RUNS_KEY, run.started_at.isoformat(), json.dumps(run.to_json()))
    except redis.RedisError as e:
        log.warning("backfill run not recorded (Redis: %s): dlq replay cannot see it", e)


def _parse(raw: str | bytes) -> BackfillRun | None:
    try:
        d = json.loads(raw)
        return BackfillRun(
            started_at=datetime.fromisoformat(d["started_at"]),
            since=datetime.fromisoformat(d["since"]) if d.get("since") else None,
            projections=tuple(d["projections"]),
            status=str(d["status"]),
            ended_at=datetime.fromisoformat(d["ended_at"]) if d.get("ended_at") else None,
            heartbeat_at=(
                datetime.fromisoformat(d["heartbeat_at"]) if d.get("heartbeat_at") else None
            ),
        )
    except (ValueError, KeyError, TypeError):
        return None


@contextmanager
def heartbeats(s: CommonSettings, run: BackfillRun) -> Iterator[None]:
    """Refresh ``run``'s record every ``backfill_heartbeat_s`` while the block runs (a
    thread; stopped, and its last write done, before the block's exit returns)."""
    every = s.backfill_heartbeat_s
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            record(s, replace(run, heartbeat_at=datetime.now(UTC)))

    thread = threading.Thread(target=beat, name="backfill-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _recorded(s: CommonSettings, r: redis.Redis) -> dict[str | bytes, BackfillRun | None]:
    """Field -> run (None: unreadable), a running one whose heartbeats stopped as died."""
    now, every = datetime.now(UTC), timedelta(seconds=s.backfill_heartbeat_s)
    out: dict[str | bytes, BackfillRun | None] = {}
    for field, raw in r.hgetall(BACKFILL_RUNS_KEY).items():
        run = _parse(raw)
        out[field] = run.judged(now, every) if run is not None else None
    return out


def runs(s: CommonSettings) -> list[BackfillRun]:
    """Every recorded run, oldest first (unreadable entries skipped; a running one whose
    heartbeats stopped as ``died``)."""
    found = [r for r in _recorded(s, client(s)).values() if r is not None]
    return sorted(found, key=lambda r: r.started_at)


EVENT_AGE_BOUND = timedelta(days=8)
"""How old a transition can be when its event still reaches a flow: ``likes.events``
keeps 7 days (deleted by whole segments, so a day more)."""


def trim_cutoff(committed: list[datetime | None], now: datetime) -> datetime | None:
    """Runs that ended before the returned time can no longer matter, given when the
    transitions of the retained dead letters were committed (``None``: unknown).

    A run matters to a dead letter only if it ended after the letter's commit
    (:func:`coverage`: it started after it, or was under way). Every retained letter's
    commit is at or after the oldest of them, and a letter written from now on carries
    an event still in ``likes.events``, committed at most :data:`EVENT_AGE_BOUND` ago, so
    runs that ended before both (less an hour for clocks) are of no use to any replay. A
    letter whose commit time is unknown may be older than any run: then nothing is
    trimmed."""
    if any(t is None for t in committed):
        return None
    oldest = min([t for t in committed if t is not None], default=now)
    return min(oldest, now - EVENT_AGE_BOUND) - timedelta(hours=1)


def trim(s: CommonSettings, before: datetime) -> int:
    """Forget the runs that ended before ``before`` (a run recorded without its end, by
    its start; one still ``running`` never, one that died by its last heartbeat) and
    unreadable entries; how many."""
    r = client(s)
    stale = []
    for field, run in _recorded(s, r).items():
        if run is None:
            stale.append(field)
        elif run.ended_at is None and run.status == "running":
            continue
        elif (run.ended_at or run.started_at) < before:
            stale.append(field)
    return int(r.hdel(BACKFILL_RUNS_KEY, *stale)) if stale else 0


class Coverage(Enum):
    """What recorded runs did with a dead letter's transition."""

    NONE = "none"  # no run read the edge store after it was committed: replay applies it
    COVERED = "covered"  # finished runs that read it rebuilt every projection with it
    UNCERTAIN = "uncertain"  # a run may have applied it to some projections


@dataclass(frozen=True)
class Verdict:
    coverage: Coverage
    detail: str = ""


def coverage(
    all_runs: list[BackfillRun],
    dead_at: datetime,
    occurred_at: datetime | None,
    every: tuple[str, ...],
) -> Verdict:
    """Whether recorded runs already applied the dead letter's transition (committed at
    ``occurred_at``, None if unknown; the letter was written at ``dead_at``, after the
    commit) to all of ``every`` projection."""
    # the latest the commit can have been (a letter is written after its commit)
    committed = min(occurred_at, dead_at) if occurred_at is not None else dead_at
    read: list[BackfillRun] = []  # started after the commit: they read it
    maybe: list[BackfillRun] = []  # under way when it was committed
    for r in all_runs:
        if r.started_at > committed:
            read.append(r)
        elif (r.ended_at is None and r.status == "running") or (
            r.ended_at is not None and r.ended_at > committed
        ):
            maybe.append(r)
    if not read and not maybe:
        return Verdict(Coverage.NONE)
    covered: set[str] = set()
    for r in read:
        read_it = r.since is None or (occurred_at is not None and occurred_at >= r.since)
        if r.status == "done" and read_it:
            covered.update(r.projections)
    described = "; ".join(
        f"{r.started_at.isoformat()} ({r.status}, {', '.join(r.projections)}"
        + (f", since {r.since.isoformat()})" if r.since else ")")
        + (" under way when it was committed" if r in maybe else "")
        for r in sorted(read + maybe, key=lambda r: r.started_at)
    )
    if covered >= set(every):
        return Verdict(Coverage.COVERED, f"backfill after it already counted it: {described}")
    return Verdict(Coverage.UNCERTAIN, f"backfill after it may have counted it: {described}")
