"""Store outages seen from the API: 503 with nothing half-written when Postgres is down;
read-your-writes when Redis is down and after it comes back with stale cache.

An outage is held by stopping the store through the supervisor (otherwise it would
restart it within seconds); a killed postmaster is restarted by the supervisor alone."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from core.settings import CommonSettings
from devstack import stack as stack_ops
from devstack.supervisor import Supervisor
from tests.conftest import auth, fresh_id, register_post
from tests.faults.kill import kill_and_wait

pytestmark = pytest.mark.integration


def test_postgres_down_gives_503_and_writes_nothing(
    api: httpx.Client, stack: CommonSettings
) -> None:
    post, user = register_post(api, stack), fresh_id()
    Supervisor(stack).stop("postgres")  # the server and every backend: unreachable
    try:
        r = api.post(
            f"/v1/posts/{post}/like", headers={**auth(stack, user), "Idempotency-Key": "pg-down"}
        )
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert api.get("/readyz").status_code == 503
    finally:
        stack_ops.up(stack)
    with psycopg.connect(stack.postgres_url) as conn:
        edge = conn.execute(
            "SELECT 1 FROM post_likes WHERE post_id = %s AND user_id = %s", (post, user)
        ).fetchone()
        outbox = conn.execute("SELECT 1 FROM like_outbox WHERE post_id = %s", (post,)).fetchone()
    assert edge is None and outbox is None
    retry = api.post(
        f"/v1/posts/{post}/like", headers={**auth(stack, user), "Idempotency-Key": "pg-down"}
    )
    assert retry.status_code == 200 and retry.json()["changed"] is True


def test_read_your_writes_through_a_redis_outage(api: httpx.Client, stack: CommonSettings) -> None:
    post, user = register_post(api, stack), fresh_id()
    h = auth(stack, user)

    def viewer_liked() -> bool:
        items = api.get("/v1/likes", params={"post_ids": str(post)}, headers=h).json()["items"]
        return bool(items[0]["viewer_liked"])

    assert api.post(f"/v1/posts/{post}/like", headers=h).status_code == 200
    assert viewer_liked() is True  # now cached in Redis as liked
    Supervisor(stack).stop("redis")
    try:
        assert api.delete(f"/v1/posts/{post}/like", headers=h).json()["liked"] is False
        assert viewer_liked() is False
        single = api.get(f"/v1/posts/{post}/likes", headers=h)
        assert single.status_code == 200 and single.json()["viewer_liked"] is False
    finally:
        stack_ops.up(stack)  # Redis returns with its append-only file: the stale "liked" entry
    assert viewer_liked() is False


def test_kill_postmaster_only_restarts(api: httpx.Client, stack: CommonSettings) -> None:
    """Backends orphaned by a killed postmaster do not stop the supervisor restarting it."""
    post = register_post(api, stack)
    kill_and_wait(stack, "postgres")
    r = api.post(f"/v1/posts/{post}/like", headers=auth(stack, fresh_id()))
    for _ in range(20):  # pooled connections to the old server fail once each at most
        if r.status_code == 200:
            break
        assert r.status_code == 503, r.text
        r = api.post(f"/v1/posts/{post}/like", headers=auth(stack, fresh_id()))
    assert r.status_code == 200


def _accepting(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(url, connect_timeout=1):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_api_serves_again_within_seconds_of_a_long_postgres_outage(
    api: httpx.Client, stack: CommonSettings
) -> None:
    """The pools' reconnection backoff is capped: after 25 s down (the default backoff
    would next try about 31 s after the loss), likes and readiness are back within 6 s
    of Postgres accepting connections, on every API process."""
    post = register_post(api, stack)
    sup = Supervisor(stack)
    sup.stop("postgres")
    try:
        lost = time.monotonic()
        while time.monotonic() - lost < 25:  # requests meanwhile keep the pools trying
            assert api.post(f"/v1/posts/{post}/like", headers=auth(stack, fresh_id())).is_error
            time.sleep(0.5)
        sup.start("postgres")
        _accepting(stack.postgres_url)
        back = time.monotonic()
        served = 0
        while served < 8:  # several in a row: both API processes, if two share the port
            r = api.post(f"/v1/posts/{post}/like", headers=auth(stack, fresh_id()))
            served = served + 1 if r.status_code == 200 else 0
            assert time.monotonic() - back < 6, f"still {r.status_code} after 6 s: {r.text}"
        assert api.get("/readyz").status_code == 200
    finally:
        stack_ops.up(stack)
