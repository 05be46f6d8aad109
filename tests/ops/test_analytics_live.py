"""Analysts against the running system: ``likes analytics query`` refuses every hostile
or broken statement with a clear error and exit 2, answers reads, and the pipeline keeps
writing exactly throughout: the process that owns the ClickHouse store and answers the
queries (the analytics flow) never dies, nor does the counts flow, and every projection
converges to the edge store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.settings import CommonSettings
from devstack import process
from devstack import stack as stack_ops
from tests.e2e.pipeline import converge, drive, new_posts

pytestmark = pytest.mark.e2e
LIKES = str(Path(sys.executable).with_name("likes"))
RAW = "likes.like_events_raw"
OWNER = "flow-analytics"  # owns embedded chDB and serves analysts (flows.runner)
WATCHED = (OWNER, "flow-counts")
HOSTILE = [
    f"INSERT INTO {RAW} SELECT * FROM {RAW} LIMIT 1",  # the query that once stopped the flow
    "INSERT INTO likes.post_like_window_parts VALUES (1, now(), now(), 'x', 1, 0, 1)",
    f"ALTER TABLE {RAW} DELETE WHERE 1",
    "CREATE TABLE likes.t (x UInt8) ENGINE = Memory",
    "DROP TABLE likes.post_like_window_parts",
    f"TRUNCATE TABLE {RAW}",
    f"OPTIMIZE TABLE {RAW} FINAL",
    f"RENAME TABLE {RAW} TO likes.gone",
    "SET readonly = 0",
    "SET max_execution_time = 100000",
    "SYSTEM STOP MERGES",
    "KILL QUERY WHERE 1",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM postgresql('127.0.0.1:15432', 'likes', 'post_likes', 'likes', 'likes')",
    "SELECT * FROM system.processes",
    "SELECT 1; DROP TABLE likes.post_like_window_parts",
    f"SELECT * FROM {RAW} INTO OUTFILE '/tmp/likes-leak.csv'",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 FORMAT JSONEachRow",
    f"SELECT * FROM {RAW} AS a CROSS JOIN {RAW} AS b CROSS JOIN {RAW} AS c",  # enormous
    f"SELECT count() FROM {RAW} AS a CROSS JOIN {RAW} AS b CROSS JOIN {RAW} AS c "
    "WHERE cityHash64(a.event_id, b.event_id, c.event_id) % 7 = 3",  # minutes long
    "SELECT post_id, FROM WHERE",
    "SELEC 1",
    "",
]


def _query(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIKES, "analytics", "query", sql, "--json"], capture_output=True, text=True, timeout=120
    )


def test_hostile_queries_never_touch_the_pipeline(stack: CommonSettings) -> None:
    assert len(HOSTILE) >= 25
    posts = new_posts(stack, 60)
    pids = {name: process.live_pid(stack_ops.pid_file(stack, name)) for name in WATCHED}
    restarts = {name: stack_ops.restarts(stack, name) for name in WATCHED}
    results: list[subprocess.CompletedProcess[str]] = []

    def attack() -> None:
        with ThreadPoolExecutor(4) as pool:
            results.extend(pool.map(_query, HOSTILE))

    t = threading.Thread(target=attack)
    t.start()
    load = drive(stack, posts, 4_000, viral_share=0.3, concurrency=12)
    t.join()
    for sql, r in zip(HOSTILE, results, strict=True):
        assert r.returncode == 2, (sql, r.returncode, r.stdout[-300:], r.stderr[-300:])
        err = r.stderr.strip()
        assert err.startswith("error: ") and len(err) > len("error: ") + 5, (sql, err)
        assert "Traceback" not in r.stderr, (sql, r.stderr[-500:])
    ok = _query(f"SELECT count() AS n FROM likes.like_events WHERE post_id IN {tuple(posts)}")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)[0]["n"] >= 0
    assert load.acked > 2_000
    report = converge(stack, posts, timeout=180)
    assert report.clean, report.summary()
    assert {name: process.live_pid(stack_ops.pid_file(stack, name)) for name in WATCHED} == pids
    assert {name: stack_ops.restarts(stack, name) for name in WATCHED} == restarts
