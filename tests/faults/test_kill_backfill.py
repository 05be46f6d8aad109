"""A backfill killed (``kill -9``) or stalled (``SIGSTOP``) while it holds the edge
store's table lock, under live traffic: the lock goes with the dead process, or with
the stalled one's session after a bounded wait, so live likes wait no longer than that;
no acknowledged like is lost; the chunks it committed are harmless to the live flows;
a rerun (or the stalled backfill itself, continued) makes every projection exact,
still exact after the next likes."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from subprocess import Popen

import httpx
import psycopg
import pytest

from core.settings import CommonSettings
from flows.backfill_chunks import FlowStateRecords
from loadgen.workload import WorkloadResult
from tests.conftest import auth, fresh_id
from tests.e2e.pipeline import acknowledged_mismatches, converge, drive, new_posts
from tests.ops.backfill_runs import LIKES, backfill_report, run_backfill, wipe_projections

pytestmark = pytest.mark.e2e
IDLE_TIMEOUT_S = FlowStateRecords(1).idle_timeout_ms / 1000

_SHARE_HOLDERS = """
SELECT l.pid FROM pg_locks l
WHERE l.locktype = 'relation' AND l.relation = 'post_likes'::regclass
  AND l.mode = 'ShareLock' AND l.granted"""


def _share_holders(conn: psycopg.Connection) -> set[int]:
    return {int(r[0]) for r in conn.execute(_SHARE_HOLDERS)}


def _stop_holding_the_lock(s: CommonSettings, since: datetime, attempts: int = 8) -> Popen[bytes]:
    """Start backfills until one is caught (SIGSTOP) while its backend holds the SHARE
    lock on ``post_likes`` inside a chunk's transaction; that one, stopped."""
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        for _ in range(attempts):
            proc = subprocess.Popen(
                [LIKES, "backfill", "--since", since.isoformat(), "--json"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            while proc.poll() is None:
                holders = _share_holders(conn)
                if not holders:
                    continue
                os.kill(proc.pid, signal.SIGSTOP)
                if _share_holders(conn) & holders:  # still inside that chunk's transaction
                    return proc
                os.kill(proc.pid, signal.SIGCONT)
            proc.wait()
    raise AssertionError(f"no backfill caught holding the lock in {attempts} runs")


def _lock_released_within(s: CommonSettings, seconds: float) -> float:
    t0 = time.monotonic()
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        while _share_holders(conn):
            assert time.monotonic() - t0 < seconds, f"the lock was held over {seconds} s"
            time.sleep(0.01)
    return time.monotonic() - t0


def _like_answered_within(s: CommonSettings, post: int, seconds: float) -> None:
    t0 = time.monotonic()
    with httpx.Client(base_url=s.api_url, timeout=10) as api:
        r = api.post(f"/v1/posts/{post}/like", headers=auth(s, fresh_id()))
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < seconds, "a like waited for the backfill's lock"


@pytest.mark.parametrize("fault", ["kill", "stall"])
def test_a_backfill_killed_or_stalled_holding_the_table_lock(
    stack: CommonSettings, fault: str
) -> None:
    """``kill``: SIGKILL; its backend ends with it. ``stall``: SIGSTOP for longer than
    the chunk's idle timeout; Postgres ends its session, the lock goes, and the
    backfill, continued, reads the chunk again and finishes by itself."""
    since = datetime.now(UTC)
    posts = new_posts(stack, 300)
    drive(stack, posts, 2_000, viral_share=0.3, concurrency=16)
    assert converge(stack, posts, timeout=120).clean
    wipe_projections(stack, posts)  # what the interrupted rebuild leaves half done must be finished

    live: list[WorkloadResult] = []
    traffic = threading.Thread(
        target=lambda: live.append(
            drive(stack, posts, 4_000, viral_share=0.3, concurrency=16, first_user=10**8)
        )
    )
    traffic.start()
    try:
        time.sleep(1)
        proc = _stop_holding_the_lock(stack, since)
        if fault == "kill":
            time.sleep(1.0)  # live likes queue behind the lock meanwhile
            os.kill(proc.pid, signal.SIGKILL)
            _lock_released_within(stack, 1.5)  # before any timeout: the session died
            _like_answered_within(stack, posts[0], 2)
            assert proc.wait(10) == -signal.SIGKILL
        else:
            _lock_released_within(stack, IDLE_TIMEOUT_S + 2)  # the process still stopped
            _like_answered_within(stack, posts[0], 2)
            os.kill(proc.pid, signal.SIGCONT)
            assert proc.wait(300) == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    finally:
        traffic.join()
    assert live and live[0].acked > 2_000
    assert acknowledged_mismatches(stack, posts, live[0]) == {}

    if fault == "kill":
        backfill_report(run_backfill(since))
    report = converge(stack, posts, timeout=180)
    assert report.clean, report.summary()
    drive(stack, posts, 600, viral_share=0.5, concurrency=8, first_user=2 * 10**8)
    report = converge(stack, posts, timeout=120)
    assert report.clean, report.summary()
