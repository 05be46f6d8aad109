"""The follow graph and ``liked_by`` through the HTTP API on the real stack."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from psycopg import AsyncConnection

from core.settings import CommonSettings
from ingest_api.liked_by import liked_by
from tests.conftest import auth, fresh_id, register_post

pytestmark = pytest.mark.integration


def _following(api: httpx.Client, s: CommonSettings, user: int, limit: int = 100) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = api.get(f"/v1/users/{user}/following", params=params, headers=auth(s, user))
        assert r.status_code == 200, r.text
        seen += [i["user_id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return seen


def _follow(api: httpx.Client, s: CommonSettings, user: int, *followees: int) -> None:
    for f in followees:
        r = api.put(f"/v1/users/{user}/following/{f}", headers=auth(s, user))
        assert r.status_code == 200, r.text


def _like(api: httpx.Client, s: CommonSettings, post: int, *users: int, like: bool = True) -> None:
    for u in users:
        path = f"/v1/posts/{post}/like"
        r = api.post(path, headers=auth(s, u)) if like else api.delete(path, headers=auth(s, u))
        assert r.status_code == 200, r.text


def test_follow_and_unfollow_are_idempotent(api: httpx.Client, stack: CommonSettings) -> None:
    user, other = fresh_id(), fresh_id()
    path, h = f"/v1/users/{user}/following/{other}", auth(stack, user)
    first = api.put(path, headers=h)
    assert first.status_code == 200
    expected = {"user_id": user, "followee_id": other, "following": True, "changed": True}
    assert first.json() == expected
    again = api.put(path, headers=h).json()
    assert (again["following"], again["changed"]) == (True, False)
    assert _following(api, stack, user) == [other]
    gone = api.delete(path, headers=h).json()
    assert (gone["following"], gone["changed"]) == (False, True)
    gone_again = api.delete(path, headers=h).json()
    assert (gone_again["following"], gone_again["changed"]) == (False, False)
    assert _following(api, stack, user) == []


def test_follows_belong_to_the_user_themself(api: httpx.Client, stack: CommonSettings) -> None:
    user, other = fresh_id(), fresh_id()
    h = auth(stack, user)
    for method in ("PUT", "DELETE"):
        r = api.request(method, f"/v1/users/{other}/following/{fresh_id()}", headers=h)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert api.get(f"/v1/users/{other}/following", headers=h).status_code == 403
    assert api.put(f"/v1/users/{user}/following/{other}").status_code == 401
    self_follow = api.put(f"/v1/users/{user}/following/{user}", headers=h)
    assert self_follow.status_code == 422
    assert self_follow.headers["content-type"].startswith("application/problem+json")
    for bad in ("0", "-1", "x", str(2**63)):
        assert api.put(f"/v1/users/{user}/following/{bad}", headers=h).status_code == 422
    assert api.get(f"/v1/users/{user}/following", params={"limit": 0}, headers=h).status_code == 422
    assert _following(api, stack, user) == []


def test_following_pages_newest_first(api: httpx.Client, stack: CommonSettings) -> None:
    user, followees = fresh_id(), [fresh_id() for _ in range(7)]
    _follow(api, stack, user, *followees)
    assert _following(api, stack, user, limit=3) == followees[::-1]
    first = api.get(
        f"/v1/users/{user}/following", params={"limit": 3}, headers=auth(stack, user)
    ).json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    assert [i["user_id"] for i in first["items"]] == followees[:3:-1]
    assert all(i["followed_at"] for i in first["items"])


def _liked_by(api: httpx.Client, s: CommonSettings, viewer: int, post: int) -> list[int]:
    single = api.get(f"/v1/posts/{post}/likes", headers=auth(s, viewer))
    assert single.status_code == 200, single.text
    batch = api.get("/v1/likes", params={"post_ids": str(post)}, headers=auth(s, viewer))
    assert batch.status_code == 200, batch.text
    assert batch.json()["items"][0]["liked_by"] == single.json()["liked_by"]
    result: list[int] = single.json()["liked_by"]
    return result


def test_liked_by_newest_followed_likers(api: httpx.Client, stack: CommonSettings) -> None:
    post, viewer = register_post(api, stack), fresh_id()
    a, b, c, d, e, stranger = (fresh_id() for _ in range(6))
    _follow(api, stack, viewer, a, b, c, d, e)
    _like(api, stack, post, a, b, c, d, stranger)  # e follows but does not like
    assert _liked_by(api, stack, viewer, post) == [d, c, b]
    _like(api, stack, post, d, like=False)
    assert _liked_by(api, stack, viewer, post) == [c, b, a]
    r = api.delete(f"/v1/users/{viewer}/following/{c}", headers=auth(stack, viewer))
    assert r.status_code == 200
    assert _liked_by(api, stack, viewer, post) == [b, a]
    _like(api, stack, post, a, like=False)
    _like(api, stack, post, a)  # liked again: now the most recent
    assert _liked_by(api, stack, viewer, post) == [a, b]
    assert _liked_by(api, stack, fresh_id(), post) == []  # follows nobody
    assert _liked_by(api, stack, a, post) == []  # a likes it but follows nobody


def test_liked_by_per_post_in_a_batch(api: httpx.Client, stack: CommonSettings) -> None:
    p1, p2, p3 = register_post(api, stack), register_post(api, stack), fresh_id()
    viewer, a, b = fresh_id(), fresh_id(), fresh_id()
    _follow(api, stack, viewer, a, b)
    _like(api, stack, p1, a)
    _like(api, stack, p2, b, a)
    r = api.get(
        "/v1/likes", params={"post_ids": f"{p2},{p3},{p1},{p2}"}, headers=auth(stack, viewer)
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["post_id"] for i in items] == [p2, p3, p1, p2]
    assert [i["liked_by"] for i in items] == [[a, b], [], [a], [a, b]]
    assert {i["viewer_liked"] for i in items} == {False}


def _product_liked_by(
    s: CommonSettings, viewer: int, likes: dict[int, int], budget: int
) -> dict[int, list[int]]:
    async def read() -> dict[int, list[int]]:
        async with await AsyncConnection.connect(s.postgres_url, autocommit=True) as conn:
            return await liked_by(conn, viewer, likes, budget)

    return asyncio.run(read())


def test_liked_by_paths_and_budgets(api: httpx.Client, stack: CommonSettings) -> None:
    """Each SQL path of ``ingest_api.liked_by`` on the real edge store, small budgets too."""
    post, viewer = register_post(api, stack), fresh_id()
    a, b, c, d, stranger = (fresh_id() for _ in range(5))
    _follow(api, stack, viewer, a, b, c, d, *(fresh_id() for _ in range(30)))  # follows 34
    _like(api, stack, post, a, b, stranger, c, d)
    newest = [d, c, b]
    assert _product_liked_by(stack, viewer, {post: 5}, 1_000) == {post: newest}  # hashed scan
    assert _product_liked_by(stack, viewer, {post: 100}, 1_000) == {post: newest}  # probe
    assert _product_liked_by(stack, viewer, {post: 5}, 20) == {post: newest}  # scan, probed
    # 3 newest edges only (d, c, the stranger): a shorter prefix of the exact answer
    assert _product_liked_by(stack, viewer, {post: 5}, 3) == {post: [d, c]}
    assert _product_liked_by(stack, viewer, {post: 5}, 0) == {post: []}
