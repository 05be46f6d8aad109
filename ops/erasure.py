"""Erasure jobs: a user's likes retracted through the pipeline, their id gone everywhere.

A job (``erasure_jobs``; opened by ``DELETE /v1/users/{id}`` or ``likes erase-user``,
which also put the user in ``erased_users``) runs these steps, each idempotent, and
records what each did in ``progress``:

1. ``fence``: waits until every API transaction that began before the job did has
   ended. The like statement refuses an erased user in the statement that would write
   the edge, so after the fence no new like of theirs can commit.
2. ``edge_store``: every liked edge of the user becomes ``unliked`` with version + 1 and
   its outbox row, in batches of ``BATCH`` edges per transaction: the same state change
   an unlike makes, so every count drops exactly (contract section 8) and reconcile's
   version judgement holds. The unliked edges stay: their versions are what the
   projections' ``seq`` fences count.
3. ``pipeline``: waits until Debezium has confirmed the WAL position after the last
   batch, then until every flow has processed ``likes.events`` up to the end offsets
   read after that: the retractions are in every projection.
4. ``idempotency_records``, ``follows``: the user's rows are deleted (follows in both
   directions).
5. ``notifications``: the user's own aggregates and ledger rows are deleted; as an
   actor they leave the ledger and every aggregate they were in is recomputed from the
   ledger (``actor_ids``, ``total_actors``; an aggregate left with no actor is
   deleted). The notification sink never records an erased user again.
6. ``recent_likers``: the user is removed from ``likes:recent:{post}`` of every post they
   had an edge on (the flow already did so on the retraction; this is the safety net).
7. ``viewer_cache``: ``likes:viewer:{user}`` is deleted, then the user's stale mark
   (``viewer_cache_stale``); again at the end, after any request that was in flight
   during the fence has written them.
8. ``clickhouse_like_events``: the user's rows are rewritten with ``user_id`` 0 (their
   totals, and every window, unchanged) and the writer anonymizes replays
   (``sinks.clickhouse_erasure``).
9. ``verify``: counts what is left of the user in every store; the job is ``done`` only
   when all of it is 0, otherwise ``failed`` (and retried by the worker).

Who runs it: whoever holds the job's advisory lock (a session lock, released if the
runner dies): the supervised ``likes jobs-worker`` picks up open and failed jobs;
``likes erase-user`` runs its job itself unless the worker already does, then waits.

Limits (said plainly): Kafka keeps the user's past events until retention (7 days) and
``like_outbox`` until its purge (1 hour); the edge store keeps the unliked edges (the
version fences need them); posts the user authored are not touched.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from core import watchdog
from core.settings import CommonSettings
from ingest_api.db import APPLICATION_NAME
from ingest_api.viewer_cache import viewer_key
from ops import analytics
from ops.flow_status import FlowWatch, end_offsets
from schemas.cdc import SLOT_NAME
from schemas.erasure import JOB_COLUMNS, JOB_SQL, REQUEST_SQL
from schemas.events import like_event_sql
from schemas.redis_keys import recent_key

log = logging.getLogger(__name__)

BATCH = 500
LOCK_CLASS = 0x11CE6
FENCE_TIMEOUT_S = 60.0
PIPELINE_TIMEOUT_S = 600.0
MAX_ATTEMPTS = 10

Progress = dict[str, dict[str, Any]]


class ErasureIncomplete(RuntimeError):
    """A step could not finish (it is retried with the whole job)."""


@dataclass
class Job:
    """One erasure job as recorded."""

    job_id: str
    user_id: int
    status: str
    attempts: int
    progress: Progress = field(default_factory=dict)
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        d = dict(zip(JOB_COLUMNS, row, strict=True))
        return cls(
            job_id=str(d["job_id"]),
            user_id=int(d["user_id"]),
            status=d["status"],
            attempts=int(d["attempts"]),
            progress=d["progress"] or {},
            error=d["error"],
            raw=d,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the job as ``GET /v1/erasures/{id}`` shows it."""
        out = dict(self.raw)
        out.update(job_id=self.job_id, status=self.status, progress=self.progress)
        out["error"] = self.error
        for k in ("created_at", "started_at", "finished_at"):
            if out.get(k) is not None:
                out[k] = out[k].isoformat()
        return out


def request(s: CommonSettings, user_id: int, requested_by: str = "operator") -> str:
    """Mark ``user_id`` erased and open a job (or join their open one): its id."""
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        for _ in range(3):
            params = {"user_id": user_id, "job_id": uuid.uuid4(), "requested_by": requested_by}
            row = conn.execute(REQUEST_SQL, params).fetchone()
            if row is not None:
                return str(row[0])
    raise ErasureIncomplete("concurrent erasure requests kept racing; run it again")


def load(s: CommonSettings, job_id: str) -> Job | None:
    """The job as recorded now (None if unknown)."""
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        row = conn.execute(JOB_SQL, (job_id,)).fetchone()
    return Job.from_row(row) if row else None


@contextmanager
def _job_lock(s: CommonSettings, job_id: str) -> Iterator[psycopg.Connection | None]:
    """A connection holding the job's session advisory lock, or None if another has it."""
    conn = psycopg.connect(s.postgres_url, autocommit=True)
    try:
        got = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, job_id)
        ).fetchone()
        yield conn if got and got[0] else None
    finally:
        conn.close()


def try_run(s: CommonSettings, job_id: str) -> Job | None:
    """Run the job if nobody else does (None when another runner holds it)."""
    with _job_lock(s, job_id) as conn:
        if conn is None:
            return None
        row = conn.execute(JOB_SQL, (job_id,)).fetchone()
        if row is None:
            raise ErasureIncomplete(f"no erasure job {job_id}")
        job = Job.from_row(row)
        if job.status == "done":
            return job
        return _run(s, conn, job)


def wait(
    s: CommonSettings, job_id: str, timeout_s: float, on_poll: Callable[[Job], None] | None = None
) -> Job:
    """Until the job is done or failed (run here whenever no one else runs it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = try_run(s, job_id) or load(s, job_id)
        if job is None:
            raise ErasureIncomplete(f"no erasure job {job_id}")
        if on_poll is not None:
            on_poll(job)
        if job.status in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(1.0)


def _save(conn: psycopg.Connection, job: Job, **fields: Any) -> None:
    sets = ["progress = %(progress)s"] + [f"{k} = %({k})s" for k in fields]
    conn.execute(
        f"UPDATE erasure_jobs SET {', '.join(sets)} WHERE job_id = %(job_id)s",
        {"progress": json.dumps(job.progress), "job_id": job.job_id, **fields},
    )


def _run(s: CommonSettings, conn: psycopg.Connection, job: Job) -> Job:
    conn.execute(
        "UPDATE erasure_jobs SET status = 'running', attempts = attempts + 1,"
        " started_at = now(), error = NULL WHERE job_id = %s",
        (job.job_id,),
    )
    earlier, job.progress = job.progress, {}
    try:
        for name, step in STEPS:
            log.info("erasure %s of user %d: %s", job.job_id, job.user_id, name)
            job.progress[name] = _merge(earlier.get(name, {}), step(s, conn, job.user_id))
            _save(conn, job)
            watchdog.beat()  # a step done is progress (``likes jobs-worker`` arms it)
        left = {k: v for k, v in job.progress["verify"].items() if v}
        if left:
            raise ErasureIncomplete(f"still present: {left}")
    except Exception as e:
        job.status, job.error = "failed", f"{type(e).__name__}: {e}"[:1000]
        log.warning("erasure %s failed: %s", job.job_id, job.error)
        _save(conn, job, status="failed", error=job.error, finished_at=_now(conn))
    else:
        job.status = "done"
        _save(conn, job, status="done", finished_at=_now(conn))
    row = conn.execute(JOB_SQL, (job.job_id,)).fetchone()
    return Job.from_row(row) if row else job


CUMULATIVE = frozenset(
    {
        "retracted",
        "deleted",
        "own_deleted",
        "actor_entries_deleted",
        "aggregates_corrected",
        "aggregates_emptied",
        "removed",
    }
)
"""Progress figures that add up over a job's runs (what a killed run already removed
still counts); the others (``remaining``, timings) describe the last run."""


def _merge(earlier: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v + earlier[k] if k in CUMULATIVE and isinstance(earlier.get(k), int) else v
        for k, v in now.items()
    }


def _now(conn: psycopg.Connection) -> Any:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    return row[0] if row else None


# --- steps: each (settings, connection, user_id) -> what it did ----------------------

_OPEN_API_TX_SQL = """SELECT count(*) FROM pg_stat_activity
WHERE application_name = %s AND pid <> pg_backend_pid()
  AND xact_start IS NOT NULL AND xact_start < %s"""


def _fence(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    since = _now(conn)
    started = time.monotonic()
    while True:
        row = conn.execute(_OPEN_API_TX_SQL, (APPLICATION_NAME, since)).fetchone()
        if row is not None and row[0] == 0:
            return {"waited_ms": round((time.monotonic() - started) * 1000)}
        if time.monotonic() - started > FENCE_TIMEOUT_S:
            raise ErasureIncomplete("API transactions older than the erasure are still open")
        time.sleep(0.05)


_PAYLOAD = like_event_sql(
    event_id="event_id::text",
    action="'LikeRemoved'",
    post_id="post_id",
    user_id="%(u)s::bigint",
    version="version",
    updated_at="updated_at",
    idempotency_key="NULL",
    author_id="author_id",
)
_RETRACT_SQL = f"""
WITH victims AS (
    SELECT e.post_id FROM post_likes e
    WHERE e.user_id = %(u)s AND e.state = 'liked'
    ORDER BY e.post_id LIMIT %(n)s
    FOR UPDATE),
up AS (
    UPDATE post_likes AS e SET state = 'unliked', updated_at = now(), version = e.version + 1
    FROM victims v
    WHERE e.post_id = v.post_id AND e.user_id = %(u)s AND e.state = 'liked'
    RETURNING e.post_id, e.version, e.updated_at),
ev AS (
    SELECT up.post_id, up.version, up.updated_at, p.author_id, gen_random_uuid() AS event_id
    FROM up JOIN posts p ON p.post_id = up.post_id),
ob AS (
    INSERT INTO like_outbox (event_id, edge_key, post_id, user_id, action, edge_version,
                             occurred_at, idempotency_key, payload)
    SELECT event_id, post_id || ':' || %(u)s, post_id, %(u)s, 'LikeRemoved', version,
           updated_at, NULL,
           {_PAYLOAD}
    FROM ev
    RETURNING 1)
SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM ob)"""


def _retract(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    retracted = 0
    while True:
        row = conn.execute(_RETRACT_SQL, {"u": user_id, "n": BATCH}).fetchone()
        edges, events = (int(row[0]), int(row[1])) if row else (0, 0)
        if edges != events:  # the transaction is already committed: say so loudly
            raise ErasureIncomplete(f"{edges} edges retracted but {events} outbox rows")
        retracted += edges
        if edges < BATCH:
            break
    left = conn.execute(
        "SELECT count(*) FROM post_likes WHERE user_id = %s AND state = 'liked'", (user_id,)
    ).fetchone()
    return {"retracted": retracted, "remaining": int(left[0]) if left else -1}


def _flows() -> tuple[str, ...]:
    from devstack.components import FLOW_NAMES

    return FLOW_NAMES


def _pipeline(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + PIPELINE_TIMEOUT_S
    lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    while True:
        row = conn.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (lsn[0] if lsn else "0/0", SLOT_NAME),
        ).fetchone()
        if row is not None and row[0]:
            break
        if time.monotonic() > deadline:
            raise ErasureIncomplete("CDC has not confirmed the retractions' WAL position")
        time.sleep(0.5)
    cdc_ms = round((time.monotonic() - started) * 1000)
    ends = end_offsets(s.kafka_bootstrap, s.events_topic)
    with FlowWatch(s) as watch:
        for flow in _flows():
            while not watch.passed(flow, ends):
                if time.monotonic() > deadline:
                    raise ErasureIncomplete(f"flow {flow} has not processed the retractions")
                time.sleep(0.5)
    return {"cdc_ms": cdc_ms, "flows_ms": round((time.monotonic() - started) * 1000) - cdc_ms}


def _deleted(conn: psycopg.Connection, sql: str, user_id: int) -> int:
    cur = conn.execute(sql, {"u": user_id})
    return cur.rowcount


def _idempotency(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    return {
        "deleted": _deleted(conn, "DELETE FROM idempotency_keys WHERE user_id = %(u)s", user_id)
    }


def _follows(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    sql = "DELETE FROM follows WHERE follower_id = %(u)s OR followee_id = %(u)s"
    return {"deleted": _deleted(conn, sql, user_id)}


_RECOMPUTE_SQL = """
WITH pairs AS (
    SELECT * FROM unnest(%(r)s::bigint[], %(p)s::bigint[]) AS x(recipient_id, post_id)),
fresh AS (
    SELECT pairs.recipient_id, pairs.post_id,
           coalesce((SELECT array_agg(a.actor_id ORDER BY a.liked_at DESC, a.actor_id DESC)
                     FROM (SELECT l.actor_id, l.liked_at FROM notification_actors l
                           WHERE l.recipient_id = pairs.recipient_id
                             AND l.post_id = pairs.post_id AND l.folded
                           ORDER BY l.liked_at DESC, l.actor_id DESC LIMIT %(keep)s) a),
                    '{}') AS actors,
           (SELECT count(*) FROM notification_actors l
            WHERE l.recipient_id = pairs.recipient_id AND l.post_id = pairs.post_id
              AND l.folded) AS total
    FROM pairs)
UPDATE notifications n SET actor_ids = fresh.actors, total_actors = fresh.total
FROM fresh
WHERE n.recipient_id = fresh.recipient_id AND n.post_id = fresh.post_id"""


def _notifications(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    from sinks.postgres_notifications import RECENT_ACTORS

    with conn.transaction():
        own = _deleted(conn, "DELETE FROM notifications WHERE recipient_id = %(u)s", user_id)
        own += _deleted(conn, "DELETE FROM notification_actors WHERE recipient_id = %(u)s", user_id)
        pairs = conn.execute(
            "SELECT DISTINCT recipient_id, post_id FROM notification_actors WHERE actor_id = %s",
            (user_id,),
        ).fetchall()
        rs, ps = [p[0] for p in pairs], [p[1] for p in pairs]
        # lock the aggregates first: the recompute's snapshot then includes every fold
        # the sink committed, and later folds wait for this transaction
        conn.execute(
            "SELECT 1 FROM notifications n JOIN unnest(%s::bigint[], %s::bigint[]) AS x(r, p)"
            " ON n.recipient_id = x.r AND n.post_id = x.p"
            " ORDER BY n.recipient_id, n.post_id FOR UPDATE OF n",
            (rs, ps),
        )
        ledger = _deleted(conn, "DELETE FROM notification_actors WHERE actor_id = %(u)s", user_id)
        fixed = conn.execute(_RECOMPUTE_SQL, {"r": rs, "p": ps, "keep": RECENT_ACTORS}).rowcount
        emptied = conn.execute(
            "DELETE FROM notifications n USING unnest(%s::bigint[], %s::bigint[]) AS x(r, p)"
            " WHERE n.recipient_id = x.r AND n.post_id = x.p AND n.total_actors = 0",
            (rs, ps),
        ).rowcount
    return {
        "own_deleted": own,
        "actor_entries_deleted": ledger,
        "aggregates_corrected": fixed,
        "aggregates_emptied": emptied,
    }


def _user_posts(conn: psycopg.Connection, user_id: int) -> list[int]:
    rows = conn.execute("SELECT post_id FROM post_likes WHERE user_id = %s", (user_id,))
    return [int(r[0]) for r in rows]


def _recent(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    posts = _user_posts(conn, user_id)
    removed = 0
    with redis.Redis.from_url(s.redis_url, socket_timeout=5) as r:
        for i in range(0, len(posts), BATCH):
            pipe = r.pipeline(transaction=False)
            for p in posts[i : i + BATCH]:
                pipe.lrem(recent_key(p), 0, str(user_id))
            removed += sum(int(n) for n in pipe.execute())
    return {"lists_checked": len(posts), "removed": removed}


def _viewer(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    with redis.Redis.from_url(s.redis_url, socket_timeout=5) as r:
        deleted = int(r.delete(viewer_key(user_id)))  # first: a stale mark guards the hash
    conn.execute("DELETE FROM viewer_cache_stale WHERE user_id = %s", (user_id,))
    return {"deleted": deleted}


def _clickhouse(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    return {"remaining": analytics.erase_user(s, user_id)}


def remaining(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, int]:
    """What is left of ``user_id`` in every store (all 0 once the erasure is done)."""

    def one(sql: str, *args: Any) -> int:
        return int((conn.execute(sql, args).fetchone() or (0,))[0])

    posts = _user_posts(conn, user_id)
    in_recent = 0
    with redis.Redis.from_url(s.redis_url, socket_timeout=5) as r:
        for i in range(0, len(posts), BATCH):
            pipe = r.pipeline(transaction=False)
            for p in posts[i : i + BATCH]:
                pipe.lpos(recent_key(p), str(user_id))
            in_recent += sum(1 for pos in pipe.execute() if pos is not None)
    return {
        "liked_edges": one(
            "SELECT count(*) FROM post_likes WHERE user_id = %s AND state = 'liked'", user_id
        ),
        "idempotency_records": one(
            "SELECT count(*) FROM idempotency_keys WHERE user_id = %s", user_id
        ),
        "follows": one(
            "SELECT count(*) FROM follows WHERE follower_id = %s OR followee_id = %s",
            user_id,
            user_id,
        ),
        "notification_ledger": one(
            "SELECT count(*) FROM notification_actors WHERE actor_id = %s OR recipient_id = %s",
            user_id,
            user_id,
        ),
        "notifications": one("SELECT count(*) FROM notifications WHERE recipient_id = %s", user_id)
        + one(
            "SELECT count(*) FROM posts p JOIN notifications n"
            " ON n.recipient_id = p.author_id AND n.post_id = p.post_id"
            " WHERE p.post_id = ANY(%s) AND %s = ANY(n.actor_ids)",
            posts,
            user_id,
        ),
        "recent_likers": in_recent,
        "viewer_cache": int(r.exists(viewer_key(user_id)))
        + one("SELECT count(*) FROM viewer_cache_stale WHERE user_id = %s", user_id),
        "clickhouse_like_events": _clickhouse_left(s, user_id),
    }


def _clickhouse_left(s: CommonSettings, user_id: int) -> int:
    _, rows = analytics.query(
        s, f"SELECT count() FROM likes.like_events_raw WHERE user_id = {int(user_id)}"
    )
    return int(rows[0][0])


def _verify(s: CommonSettings, conn: psycopg.Connection, user_id: int) -> dict[str, Any]:
    """What is left; the viewer cache is swept once more first, since a read in flight
    at the fence may have filled it again after its own step."""
    _viewer(s, conn, user_id)
    return remaining(s, conn, user_id)


Step = Callable[[CommonSettings, psycopg.Connection, int], dict[str, Any]]
STEPS: tuple[tuple[str, Step], ...] = (
    ("fence", _fence),
    ("edge_store", _retract),
    ("pipeline", _pipeline),
    ("idempotency_records", _idempotency),
    ("follows", _follows),
    ("notifications", _notifications),
    ("recent_likers", _recent),
    ("viewer_cache", _viewer),
    ("clickhouse_like_events", _clickhouse),
    ("verify", _verify),
)


def render(job: Job) -> str:
    """The job as a table: one row per step, what it did; then the verdict."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"erasure {job.job_id} of user {job.user_id}: {job.status}")
    table.add_column("projection / step")
    table.add_column("result")
    for name, _ in STEPS:
        got = job.progress.get(name)
        shown = "not run" if got is None else ", ".join(f"{k} {v}" for k, v in got.items())
        table.add_row(name, shown or "-")
    buf = io.StringIO()
    console = Console(file=buf, width=120, color_system=None, force_terminal=False)
    console.print(table)
    if job.error:
        console.print(f"error: {job.error}")
    return buf.getvalue().rstrip("\n")


# --- the worker ------------------------------------------------------------------

_TODO_SQL = """SELECT job_id::text FROM erasure_jobs
WHERE status IN ('pending', 'running')
   OR (status = 'failed' AND attempts < %s
       AND finished_at < now() - make_interval(secs => least(300, 5 * 2 ^ attempts)))
ORDER BY created_at LIMIT 20"""


def todo(s: CommonSettings) -> list[str]:
    """Jobs to run: open ones, and failed ones whose back-off has passed."""
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(_TODO_SQL, (MAX_ATTEMPTS,))]
