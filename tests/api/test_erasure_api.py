"""The erasure routes through the HTTP API on the real stack: who may erase and read a
job, what the answers look like, and that an erased user's writes are refused (410)
with nothing written. The whole job, end to end, is ``tests/e2e/test_erasure.py``."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from core.settings import CommonSettings
from tests.conftest import auth, fresh_id, register_post

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def _count(s: CommonSettings, sql: str, *params: object) -> int:
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def test_only_the_user_or_an_admin_erases(api: httpx.Client, stack: CommonSettings) -> None:
    user, other = fresh_id(), fresh_id()
    r = api.delete(f"/v1/users/{user}", headers=auth(stack, other))
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    assert api.delete(f"/v1/users/{user}").status_code == 401
    assert _count(stack, "SELECT count(*) FROM erased_users WHERE user_id = %s", user) == 0
    for bad in ("0", "-5", "abc", str(2**63)):
        r = api.delete(f"/v1/users/{bad}", headers=auth(stack, user))
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), bad

    r = api.delete(f"/v1/users/{user}", headers=auth(stack, fresh_id(), "admin"))
    assert r.status_code == 202, r.text
    job = r.json()
    assert set(job) == {
        "job_id",
        "user_id",
        "status",
        "attempts",
        "progress",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    }
    assert job["user_id"] == user and uuid.UUID(job["job_id"])
    assert r.headers["location"] == f"/v1/erasures/{job['job_id']}"

    path = f"/v1/erasures/{job['job_id']}"
    assert api.get(path, headers=auth(stack, user)).status_code == 200
    assert api.get(path, headers=auth(stack, fresh_id(), "admin")).status_code == 200
    r = api.get(path, headers=auth(stack, other))
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    r = api.get(f"/v1/erasures/{uuid.uuid4()}", headers=auth(stack, user))
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    r = api.get("/v1/erasures/not-a-uuid", headers=auth(stack, user))
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)


def test_an_erased_users_writes_are_refused_and_write_nothing(
    api: httpx.Client, stack: CommonSettings
) -> None:
    user, friend = fresh_id(), fresh_id()
    post = register_post(api, stack)
    assert api.post(f"/v1/posts/{post}/like", headers=auth(stack, user)).status_code == 200
    r = api.delete(f"/v1/users/{user}", headers=auth(stack, user))
    assert r.status_code == 202, r.text

    for method in ("POST", "DELETE"):
        headers = {**auth(stack, user), "Idempotency-Key": f"after-{method}"}
        r = api.request(method, f"/v1/posts/{post}/like", headers=headers)
        assert r.status_code == 410, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        assert "erased" in r.json()["detail"]
    assert _count(stack, "SELECT count(*) FROM idempotency_keys WHERE user_id = %s", user) == 0, (
        "a refused request keeps no idempotency record"
    )
    for follower, followee in ((user, friend), (friend, user)):
        r = api.put(f"/v1/users/{follower}/following/{followee}", headers=auth(stack, follower))
        assert r.status_code == 410, r.text
    assert (
        _count(
            stack,
            "SELECT count(*) FROM follows WHERE follower_id = %s OR followee_id = %s",
            user,
            user,
        )
        == 0
    )
    # a repeated request joins the open job, or opens a new one once it is done
    again = api.delete(f"/v1/users/{user}", headers=auth(stack, user))
    assert again.status_code == 202
    assert (
        _count(
            stack,
            "SELECT count(*) FROM erasure_jobs"
            " WHERE user_id = %s AND status IN ('pending', 'running')",
            user,
        )
        <= 1
    )
