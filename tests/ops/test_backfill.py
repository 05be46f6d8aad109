"""``likes backfill`` under live traffic: Redis counts, ``post_like_counts`` and
``likes:recent:*`` wiped in the middle of a workload are rebuilt from the edge store,
nothing is double-counted (every projection equals the edge store afterwards) and it
stays exact with the next 1,000 live likes; asking for what it cannot rebuild is a clear
error."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis

from core.settings import CommonSettings
from ops.backfill import REBUILT
from schemas.redis_keys import count_key, count_seq_key, recent_key, recent_seq_key
from tests.e2e.pipeline import converge, drive, new_posts
from tests.e2e.test_read_models import edge_store_recent, redis_recent, wait_for

pytestmark = pytest.mark.e2e
LIKES = str(Path(sys.executable).with_name("likes"))


def _wipe(s: CommonSettings, posts: list[int]) -> None:
    r = redis.Redis.from_url(s.redis_url)
    keys = (count_key, count_seq_key, recent_key, recent_seq_key)
    r.delete(*[k(p) for p in posts for k in keys])
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        conn.execute("DELETE FROM post_like_counts WHERE post_id = ANY(%s)", (posts,))


def test_backfill_rebuilds_wiped_projections_under_live_traffic(stack: CommonSettings) -> None:
    since = datetime.now(UTC)
    posts = new_posts(stack, 120)
    runs: list[subprocess.CompletedProcess[str]] = []

    def operator() -> None:
        time.sleep(8)
        _wipe(stack, posts)
        runs.append(
            subprocess.run(
                [LIKES, "backfill", "--since", since.isoformat(), "--json"],
                capture_output=True,
                text=True,
                timeout=300,
            )
        )

    t = threading.Thread(target=operator)
    t.start()
    result = drive(stack, posts, 8_000, processes=2, viral_share=0.3, concurrency=24)
    t.join()
    assert result.acked > 4_000
    done = runs[0]
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["projections"] == list(REBUILT) and report["posts"] >= 100
    quiet = posts[60:]  # posts the workload may not touch after the wipe still came back
    assert converge(stack, posts, timeout=180).clean
    r = redis.Redis.from_url(stack.redis_url)
    assert all(r.get(count_key(p)) is not None for p in quiet if r.get(count_seq_key(p)))
    truth = edge_store_recent(stack, posts)
    wait_for("recent likers", lambda: redis_recent(stack, posts), lambda got: got == truth, 120)
    drive(stack, posts, 1_000, viral_share=0.3, concurrency=16)
    assert converge(stack, posts, timeout=180).clean


def test_backfill_refuses_what_it_cannot_rebuild(stack: CommonSettings) -> None:
    done = subprocess.run(
        [LIKES, "backfill", "--projection", "bogus"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "unknown projection" in done.stderr, done.stderr
