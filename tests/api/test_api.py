"""The HTTP API against the real stack: transitions, idempotency, errors, reads."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest

from core.settings import CommonSettings
from tests.conftest import auth, fresh_id, register_post

pytestmark = pytest.mark.integration


def _outbox_rows(s: CommonSettings, post: int, user: int) -> list[tuple[int, str]]:
    with psycopg.connect(s.postgres_url) as conn:
        return conn.execute(
            "SELECT edge_version, action FROM like_outbox "
            "WHERE post_id = %s AND user_id = %s ORDER BY edge_version",
            (post, user),
        ).fetchall()


def test_like_unlike_transitions(api: httpx.Client, stack: CommonSettings) -> None:
    post, user = register_post(api, stack), fresh_id()
    h = auth(stack, user)
    first = api.post(f"/v1/posts/{post}/like", headers=h)
    assert first.status_code == 200
    assert first.json() == {
        "post_id": post,
        "user_id": user,
        "liked": True,
        "changed": True,
        "version": 1,
    }
    again = api.post(f"/v1/posts/{post}/like", headers=h).json()
    assert (again["changed"], again["version"]) == (False, 1)
    un = api.delete(f"/v1/posts/{post}/like", headers=h).json()
    assert (un["liked"], un["changed"], un["version"]) == (False, True, 2)
    un2 = api.delete(f"/v1/posts/{post}/like", headers=h).json()
    assert (un2["changed"], un2["version"]) == (False, 2)
    assert _outbox_rows(stack, post, user) == [(1, "LikeCreated"), (2, "LikeRemoved")]
    view = api.get(f"/v1/posts/{post}/likes", headers=h).json()
    assert view["viewer_liked"] is False


def test_unlike_of_never_liked_edge_writes_nothing(
    api: httpx.Client, stack: CommonSettings
) -> None:
    post, user = register_post(api, stack), fresh_id()
    r = api.delete(f"/v1/posts/{post}/like", headers=auth(stack, user)).json()
    assert (r["liked"], r["changed"], r["version"]) == (False, False, 0)
    assert _outbox_rows(stack, post, user) == []


def test_idempotency_key_replay_mismatch(api: httpx.Client, stack: CommonSettings) -> None:
    post, user = register_post(api, stack), fresh_id()
    h = {**auth(stack, user), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = api.post(f"/v1/posts/{post}/like", headers=h)
    api.delete(f"/v1/posts/{post}/like", headers=auth(stack, user))  # edge changes since
    replay = api.post(f"/v1/posts/{post}/like", headers=h)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    mismatch = api.delete(f"/v1/posts/{post}/like", headers=h)
    assert mismatch.status_code == 422
    assert mismatch.headers["content-type"].startswith("application/problem+json")
    other_user = api.post(
        f"/v1/posts/{post}/like",
        headers={**auth(stack, fresh_id()), "Idempotency-Key": h["Idempotency-Key"]},
    )
    assert other_user.status_code == 200 and "Idempotent-Replayed" not in other_user.headers
    too_long = api.post(
        f"/v1/posts/{post}/like", headers={**auth(stack, user), "Idempotency-Key": "x" * 256}
    )
    assert too_long.status_code == 422


def _claim_from_a_session(s: CommonSettings, user: int, key: str, post: int) -> psycopg.Connection:
    """What a request still in flight leaves behind: a claim owned by a live session."""
    from ingest_api.idempotency import fingerprint

    conn = psycopg.connect(s.postgres_url, autocommit=True)
    conn.execute(
        "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, owner_pid, "
        "owner_epoch) VALUES (%s, %s, %s, pg_backend_pid(), pg_postmaster_start_time())",
        (user, key, fingerprint("POST", f"/v1/posts/{post}/like")),
    )
    return conn


def test_idempotency_key_in_flight_is_409(api: httpx.Client, stack: CommonSettings) -> None:
    post, user, key = register_post(api, stack), fresh_id(), f"k-{uuid.uuid4()}"
    owner = _claim_from_a_session(stack, user, key, post)
    headers = {**auth(stack, user), "Idempotency-Key": key}
    r = api.post(f"/v1/posts/{post}/like", headers=headers)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    pid = owner.info.backend_pid
    owner.close()  # the holder dies without completing: once its session is gone (the
    # backend exits asynchronously after the close), the next retry takes over at once
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the owner's session never ended"
            time.sleep(0.02)
    retry = api.post(f"/v1/posts/{post}/like", headers=headers)
    assert retry.status_code == 200 and retry.json()["changed"] is True


def test_concurrent_identical_likes_change_once(stack: CommonSettings) -> None:
    post_client = httpx.Client(base_url=stack.api_url)
    post, user = register_post(post_client, stack), fresh_id()
    post_client.close()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as c:
            return await asyncio.gather(
                *[c.post(f"/v1/posts/{post}/like", headers=auth(stack, user)) for _ in range(40)]
            )

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
    assert sum(r.json()["changed"] for r in responses) == 1
    assert {r.json()["version"] for r in responses} == {1}
    assert _outbox_rows(stack, post, user) == [(1, "LikeCreated")]


@pytest.mark.parametrize("raw", ["0", "-5", "abc", "1.5", str(2**63), "99999999999999999999"])
def test_bad_post_ids_are_422(api: httpx.Client, stack: CommonSettings, raw: str) -> None:
    r = api.post(f"/v1/posts/{raw}/like", headers=auth(stack, fresh_id()))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 422


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"author_id": 0}',
        b'{"author_id": "7"}',
        b"not json",
        b'{"author_id": 99999999999999999999}',
    ],
)
def test_bad_bodies_are_422(api: httpx.Client, stack: CommonSettings, body: bytes) -> None:
    r = api.put(
        f"/v1/posts/{fresh_id()}",
        content=body,
        headers={**auth(stack, 1, "posts:write"), "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text


def test_batch_read_ids_are_validated(api: httpx.Client, stack: CommonSettings) -> None:
    h = auth(stack, fresh_id())
    assert api.get("/v1/likes", params={"post_ids": "1,x"}, headers=h).status_code == 422
    many = ",".join(str(i) for i in range(1, 102))
    assert api.get("/v1/likes", params={"post_ids": many}, headers=h).status_code == 422


def test_unknown_and_deleted_posts(api: httpx.Client, stack: CommonSettings) -> None:
    h = auth(stack, fresh_id())
    assert api.post(f"/v1/posts/{fresh_id()}/like", headers=h).status_code == 404
    post = register_post(api, stack)
    writer = auth(stack, 1, "posts:write")
    assert api.delete(f"/v1/posts/{post}", headers=writer).status_code == 200
    gone = api.post(f"/v1/posts/{post}/like", headers=h)
    assert gone.status_code == 410
    assert gone.headers["content-type"].startswith("application/problem+json")


def test_scopes_and_other_users_data(api: httpx.Client, stack: CommonSettings) -> None:
    user = fresh_id()
    no_scope = api.put(f"/v1/posts/{fresh_id()}", json={"author_id": 1}, headers=auth(stack, user))
    assert no_scope.status_code == 403
    assert api.get(f"/v1/users/{user + 1}/likes", headers=auth(stack, user)).status_code == 403
    assert api.get(f"/v1/users/{user}/likes", headers=auth(stack, user)).status_code == 200


def test_auth_failures_over_http(api: httpx.Client, stack: CommonSettings) -> None:
    post = fresh_id()
    assert api.post(f"/v1/posts/{post}/like").status_code == 401
    expired = {
        "Authorization": "Bearer " + __import__("tests.conftest").conftest.token(stack, 5, ttl=-100)
    }
    r = api.post(f"/v1/posts/{post}/like", headers=expired)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")


def test_reads_likers_batch_and_pagination(api: httpx.Client, stack: CommonSettings) -> None:
    post = register_post(api, stack)
    users = [fresh_id() for _ in range(5)]
    for u in users:
        assert api.post(f"/v1/posts/{post}/like", headers=auth(stack, u)).status_code == 200
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get(
            f"/v1/posts/{post}/likers", params=params, headers=auth(stack, users[0])
        ).json()
        seen += [i["user_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(users)
    batch = api.get(
        "/v1/likes",
        params={"post_ids": f"{post},{fresh_id()},{post}"},
        headers=auth(stack, users[0]),
    ).json()["items"]
    assert [i["post_id"] for i in batch][::2] == [post, post]
    assert batch[0]["viewer_liked"] is True and batch[1]["viewer_liked"] is False
    mine = api.get(f"/v1/users/{users[0]}/likes", headers=auth(stack, users[0])).json()
    assert post in [i["post_id"] for i in mine["items"]]


def test_health_metrics_openapi(api: httpx.Client) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").json()["postgres"] is True
    assert "likes_api_request_seconds" in api.get("/metrics").text
    assert "/v1/posts/{post_id}/like" in api.get("/openapi.json").json()["paths"]
