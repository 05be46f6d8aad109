"""``likes reconcile`` finds drift in every projection and ``--repair`` removes it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from core.settings import CommonSettings
from ops.analytics import write_window_repairs
from ops.drift import measure
from tests.conftest import auth, fresh_id, register_post
from tests.e2e.pipeline import converge

pytestmark = pytest.mark.e2e
LIKES = str(Path(sys.executable).with_name("likes"))


def test_reconcile_detects_and_repairs_drift(api: httpx.Client, stack: CommonSettings) -> None:
    post = register_post(api, stack)
    for _ in range(3):
        assert (
            api.post(f"/v1/posts/{post}/like", headers=auth(stack, fresh_id())).status_code == 200
        )
    assert converge(stack, [post], timeout=90).clean
    # corrupt all three projections of this post
    redis.Redis.from_url(stack.redis_url).set(f"likes:count:{post}", 99)
    with psycopg.connect(stack.postgres_url) as conn:
        conn.execute("UPDATE post_like_counts SET like_count = 7 WHERE post_id = %s", (post,))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    write_window_repairs(stack, [(post, start, end, f"repair:{uuid.uuid4()}", 5, 0, 1)])
    drifting = measure(stack, [post]).drift
    assert {k: [r[1:] for r in v] for k, v in drifting.items()} == {
        "redis": [(99, 3)],
        "postgres": [(7, 3)],
        "clickhouse": [(8, 3)],
    }

    check = subprocess.run([LIKES, "reconcile", "--json"], capture_output=True, text=True)
    assert check.returncode == 1, check.stdout + check.stderr
    fix = subprocess.run([LIKES, "reconcile", "--repair", "--json"], capture_output=True, text=True)
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert measure(stack, [post]).clean
    status = subprocess.run([LIKES, "status", "--json"], capture_output=True, text=True)
    assert '"drift"' in status.stdout
