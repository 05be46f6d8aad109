"""Running ``likes backfill`` as an operator does, and damaging projections for it to
rebuild."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis

from core.settings import CommonSettings
from schemas.redis_keys import count_key, count_seq_key, recent_key, recent_seq_key

LIKES = str(Path(sys.executable).with_name("likes"))


def run_backfill(since: datetime, *projections: str) -> subprocess.CompletedProcess[str]:
    """``likes backfill --since SINCE [--projection X ...] --json``, as an operator runs it."""
    only = [a for p in projections for a in ("--projection", p)]
    return subprocess.run(
        [LIKES, "backfill", *only, "--since", since.isoformat(), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def backfill_report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The report of a backfill that must have succeeded."""
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def wipe_projections(s: CommonSettings, posts: list[int]) -> None:
    """Delete the posts' Redis counts and recent likers and their ``post_like_counts``."""
    r = redis.Redis.from_url(s.redis_url)
    keys = (count_key, count_seq_key, recent_key, recent_seq_key)
    r.delete(*[k(p) for p in posts for k in keys])
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        conn.execute("DELETE FROM post_like_counts WHERE post_id = ANY(%s)", (posts,))
