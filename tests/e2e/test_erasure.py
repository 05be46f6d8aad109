"""End to end: erasing a user (contract sections 2, 4 and 8) while traffic flows.

The erased user has likes (one edge at version 3), idempotency records, follows both
ways, a place in another author's notification aggregates, notifications of their own,
a viewer cache, recent-liker entries and ClickHouse events. Other users keep liking the
same posts throughout. The jobs worker running the erasure is killed mid-job: the
supervisor restarts it and the job finishes. Afterwards nothing of the user remains
anywhere, their likes are refused with 410, every projection equals the edge store
(counts dropped exactly), and ``likes erase-user`` on the same user is a clean no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from core.settings import CommonSettings
from ingest_api.viewer_cache import viewer_key
from ops import analytics
from schemas.redis_keys import recent_key
from tests.conftest import auth, fresh_id
from tests.e2e.pipeline import converge, drive
from tests.e2e.read_models import NOTE_SQL, like_all, register
from tests.faults.kill import kill_and_wait
from tests.waiting import fanout_caught_up, wait_for

pytestmark = pytest.mark.e2e
LIKES = str(Path(sys.executable).with_name("likes"))


def _one(s: CommonSettings, sql: str, *params: Any) -> Any:
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def _ch(s: CommonSettings, sql: str) -> list[Any]:
    return analytics.query(s, sql)[1]


def _job(api: httpx.Client, s: CommonSettings, job_id: str, user: int) -> dict[str, Any]:
    r = api.get(f"/v1/erasures/{job_id}", headers=auth(s, user))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_erasure_retracts_every_like_and_removes_the_id_everywhere(stack: CommonSettings) -> None:
    api = httpx.Client(base_url=stack.api_url, timeout=30)
    erased, author, follower = fresh_id(), fresh_id(), fresh_id()
    friends = [fresh_id() for _ in range(4)]
    posts = [register(stack, author) for _ in range(6)]
    own_post = register(stack, erased)
    everything = [*posts, own_post]

    for i, p in enumerate(posts):
        headers = {**auth(stack, erased), "Idempotency-Key": f"erase-me-{i}"}
        assert api.post(f"/v1/posts/{p}/like", headers=headers).status_code == 200
    assert api.delete(f"/v1/posts/{posts[0]}/like", headers=auth(stack, erased)).status_code == 200
    assert (
        api.post(f"/v1/posts/{posts[0]}/like", headers=auth(stack, erased)).json()["version"] == 3
    )
    for p in posts[:3]:
        like_all(stack, p, friends)
    like_all(stack, own_post, friends[:2])
    r = api.put(f"/v1/users/{erased}/following/{friends[0]}", headers=auth(stack, erased))
    assert r.status_code == 200, r.text
    r = api.put(f"/v1/users/{follower}/following/{erased}", headers=auth(stack, follower))
    assert r.status_code == 200, r.text
    ids = ",".join(map(str, posts))
    batch = api.get(f"/v1/likes?post_ids={ids}", headers=auth(stack, erased)).json()["items"]
    assert all(item["viewer_liked"] for item in batch)
    assert redis.Redis.from_url(stack.redis_url).exists(viewer_key(erased))

    # the user is everywhere before the erasure
    assert converge(stack, everything).clean
    fanout_caught_up(stack)
    note = wait_for(
        "the erased user in the author's notification",
        lambda: _one(stack, NOTE_SQL, author, posts[0]),
        lambda n: n is not None and n == 5,
        120,
    )
    assert note == 5
    assert _one(stack, "SELECT count(*) FROM notifications WHERE recipient_id = %s", erased) == 1
    r_ = redis.Redis.from_url(stack.redis_url)
    assert all(r_.lpos(recent_key(p), str(erased)) is not None for p in posts)
    wait_for(
        "the erased user's events in ClickHouse",
        lambda: _ch(stack, f"SELECT count() FROM likes.like_events WHERE user_id = {erased}"),
        lambda rows: rows[0][0] == len(posts) + 2,
        120,
    )

    # traffic on the same posts throughout
    traffic: list[Any] = []
    load = threading.Thread(
        target=lambda: traffic.append(drive(stack, everything, 1500, users=60, unlike_share=0.3))
    )
    load.start()

    assert api.delete(f"/v1/users/{erased}", headers=auth(stack, friends[0])).status_code == 403
    r = api.delete(f"/v1/users/{erased}", headers=auth(stack, erased))
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/erasures/{job['job_id']}"
    assert job["user_id"] == erased and job["status"] in ("pending", "running", "done")
    admin = api.delete(f"/v1/users/{erased}", headers=auth(stack, fresh_id(), "admin"))
    assert admin.status_code == 202
    first = _job(api, stack, job["job_id"], erased)
    assert admin.json()["job_id"] == job["job_id"] or first["status"] == "done"
    assert api.get(f"/v1/erasures/{job['job_id']}", headers=auth(stack, author)).status_code == 403

    refused = api.post(
        f"/v1/posts/{posts[1]}/like", headers={**auth(stack, erased), "Idempotency-Key": "late"}
    )
    assert refused.status_code == 410, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert api.delete(f"/v1/posts/{posts[1]}/like", headers=auth(stack, erased)).status_code == 410

    # kill the worker while the job runs; the supervisor alone brings it back
    running = wait_for(
        "the job to start",
        lambda: _job(api, stack, job["job_id"], erased),
        lambda j: j["status"] != "pending",
        60,
    )
    killed_mid_job = running["status"] == "running"
    kill_and_wait(stack, "jobs")
    done = wait_for(
        "the erasure to finish",
        lambda: _job(api, stack, job["job_id"], erased),
        lambda j: j["status"] in ("done", "failed") and j["finished_at"] is not None,
        300,
    )
    assert done["status"] == "done", done
    assert not any(done["progress"]["verify"].values()), done["progress"]
    if killed_mid_job:
        assert done["attempts"] >= 2, "the killed run was taken up again"
    load.join()
    assert traffic and not traffic[0].errors, traffic

    # nothing of the user remains, and the counts dropped exactly
    assert (
        _one(
            stack, "SELECT count(*) FROM post_likes WHERE user_id = %s AND state = 'liked'", erased
        )
        == 0
    )
    assert _one(stack, "SELECT count(*) FROM idempotency_keys WHERE user_id = %s", erased) == 0
    assert (
        _one(
            stack,
            "SELECT count(*) FROM follows WHERE follower_id = %s OR followee_id = %s",
            erased,
            erased,
        )
        == 0
    )
    assert _one(stack, "SELECT count(*) FROM notifications WHERE recipient_id = %s", erased) == 0
    report = converge(stack, everything, timeout=240)
    assert report.clean, report.summary()
    fanout_caught_up(stack)
    for p in posts:
        row = _rows_note(stack, author, p)
        if row is not None:
            total, _, actor_ids, folded = row
            assert erased not in actor_ids and total == folded, (p, row)
    assert not any(r_.lpos(recent_key(p), str(erased)) is not None for p in everything)
    assert not r_.exists(viewer_key(erased))
    assert _ch(stack, f"SELECT count() FROM likes.like_events_raw WHERE user_id = {erased}") == [
        [0]
    ]
    in_list = ",".join(map(str, everything))
    truth = {
        p: _one(stack, "SELECT count(*) FROM post_likes WHERE post_id = %s AND state = 'liked'", p)
        for p in everything
    }

    def sums() -> dict[int, int]:
        rows = _ch(
            stack,
            f"SELECT post_id, sum(delta) FROM likes.like_events WHERE post_id IN ({in_list})"
            " GROUP BY post_id",
        )
        got = {int(p): int(n) for p, n in rows}
        return {p: got.get(p, 0) for p in everything}

    wait_for("anonymous events keeping exact totals", sums, lambda got: got == truth, 120)

    # the CLI agrees, and erasing again is a clean no-op
    out = subprocess.run(
        [LIKES, "erase-user", str(erased), "--json"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    again = json.loads(out.stdout)
    assert again["status"] == "done" and again["progress"]["edge_store"]["retracted"] == 0
    assert not any(again["progress"]["verify"].values())
    api.close()


def _rows_note(s: CommonSettings, author: int, post: int) -> tuple[Any, ...] | None:
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        row = conn.execute(NOTE_SQL, (author, post)).fetchone()
    return tuple(row) if row else None


def test_erase_user_cli_refuses_a_bad_id(stack: CommonSettings) -> None:
    out = subprocess.run([LIKES, "erase-user", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "positive 64-bit" in out.stderr
    started = time.monotonic()
    out = subprocess.run([LIKES, "erase-user", "abc"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and time.monotonic() - started < 60
