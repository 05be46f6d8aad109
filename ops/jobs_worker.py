"""``likes jobs-worker``: runs the operator jobs the API accepts (erasures), supervised.

Guarantee: every erasure job opened by ``DELETE /v1/users/{id}`` is run to ``done``
without an operator: open jobs at once, failed ones again after a back-off (5 s,
doubling, at most 5 min; ``ops.erasure.MAX_ATTEMPTS`` runs). A job belongs to whoever
holds its advisory lock, so a worker killed mid-job leaves it to the next one (or to
``likes erase-user``) and each step, idempotent, is simply run again. Metrics on
``<metrics_host>:<jobs_port>``: ``likes_erasure_jobs_total`` (``status`` of each run)
and ``likes_erasure_jobs_open``.

A worker that stops making progress while alive (a statement waiting on a lock for
good, a request that never returns) would leave every erasure open, seen only as
``likes_erasure_jobs_open`` not falling: the watchdog (:mod:`core.watchdog`) ends the
process when neither a poll nor a step of a job (``ops.erasure`` beats) has finished
for ``STALL_S`` (longer than the slowest legitimate step: ClickHouse's erasure may wait
``OWNER_WAIT_S`` for its owner, then up to 300 s for its answer), and its supervisor
restarts it; the job's advisory lock dies with its session, so the restarted worker
runs it again (``ComponentRestarted`` tells the operator).
"""

from __future__ import annotations

import logging
import time

import psycopg
from prometheus_client import Counter, Gauge, disable_created_metrics, start_http_server

from core import watchdog
from core.settings import CommonSettings
from ops import erasure

log = logging.getLogger(__name__)

RUNS = Counter("likes_erasure_jobs", "Erasure job runs, by outcome", ["status"])
OPEN = Gauge("likes_erasure_jobs_open", "Erasure jobs not yet done (pending, running, failed)")
POLL_S = 1.0
STALL_S = 900.0


def _count_open(s: CommonSettings) -> int:
    with psycopg.connect(s.postgres_url, autocommit=True, connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM erasure_jobs WHERE status <> 'done'").fetchone()
    return int(row[0]) if row else 0


def poll_once(s: CommonSettings) -> int:
    """Run every job that is due and free; the number run."""
    ran = 0
    for job_id in erasure.todo(s):
        job = erasure.try_run(s, job_id)
        if job is not None:
            RUNS.labels(job.status).inc()
            ran += 1
    OPEN.set(_count_open(s))
    return ran


def serve(s: CommonSettings, stall_s: float = STALL_S) -> None:
    """Serve /metrics and run due jobs forever; a worker stuck for ``stall_s`` ends
    itself (module docstring)."""
    watchdog.arm(stall_s)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    for status in ("done", "failed"):
        RUNS.labels(status)
    start_http_server(s.jobs_port, addr=s.metrics_host)
    log.info("jobs worker: /metrics on %s:%d", s.metrics_host, s.jobs_port)
    while True:
        try:
            poll_once(s)
        except (psycopg.OperationalError, OSError) as e:  # the store is down: wait for it
            log.warning("jobs worker: %s", e)
        watchdog.beat()
        time.sleep(POLL_S)
