"""The like/unlike hot path (``ingest_api.routes.like_fast``) answers exactly as the
documented FastAPI route does, and leaves every request it does not plainly understand
to that route."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from core.settings import ApiSettings, CommonSettings
from ingest_api.app import create_app
from ingest_api.auth import MAX_ID
from ingest_api.metrics import REQUESTS
from ingest_api.routes.like_fast import FastLikeRoute, _request
from tests.api.inprocess import collector_restored
from tests.conftest import auth, fresh_id, register_post


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": headers or []}


def test_takes_only_plainly_well_formed_requests() -> None:
    tok = (b"authorization", b"Bearer t")
    assert _request(_scope("POST", "/v1/posts/5/like", [tok])) == (5, True, "Bearer t", None)
    assert _request(_scope("DELETE", f"/v1/posts/{MAX_ID}/like")) == (MAX_ID, False, None, None)
    key = (b"idempotency-key", b"k 1")
    assert _request(_scope("POST", "/v1/posts/5/like", [key, tok])) == (5, True, "Bearer t", "k 1")
    second = (b"authorization", b"Bearer other")
    assert _request(_scope("POST", "/v1/posts/5/like", [tok, second]))[2] == "Bearer t"  # type: ignore[index]
    # left to the FastAPI route: its validation decides (it accepts some, 422s others)
    for path in (
        "/v1/posts/05/like",
        "/v1/posts/+5/like",
        "/v1/posts/5_0/like",
        "/v1/posts/0/like",
        f"/v1/posts/{MAX_ID + 1}/like",
        "/v1/posts/5/like/",
        "/v1/posts/5/likes",
        "/v1/posts/x/like",
    ):
        assert _request(_scope("POST", path)) is None, path
    for method in ("GET", "PUT", "HEAD", "OPTIONS", "PATCH"):
        assert _request(_scope(method, "/v1/posts/5/like")) is None, method
    for keys in (
        [key, key],
        [(b"idempotency-key", b"")],
        [(b"idempotency-key", b" padded")],
        [(b"idempotency-key", b"x" * 256)],
        [(b"idempotency-key", b"tab\there")],
    ):
        assert _request(_scope("POST", "/v1/posts/5/like", keys)) is None, keys


Handle = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _scenario(
    app: Any, settings: CommonSettings, post: int, unknown: int, user: int
) -> list[tuple[int, dict[str, str], str]]:
    """The same requests, answered by ``app``: (status, headers, body) with the ids
    replaced by names, so two apps' answers compare."""
    h = auth(settings, user)
    keyed = {**h, "Idempotency-Key": "parity-1"}
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("POST", f"/v1/posts/{post}/like", h),
        ("POST", f"/v1/posts/{post}/like", h),
        ("DELETE", f"/v1/posts/{post}/like", h),
        ("DELETE", f"/v1/posts/{post}/like", h),
        ("POST", f"/v1/posts/{post}/like", keyed),
        ("POST", f"/v1/posts/{post}/like", keyed),  # replayed
        ("DELETE", f"/v1/posts/{post}/like", keyed),  # the key's other request: 422
        ("POST", f"/v1/posts/{post}/like", {}),
        ("POST", f"/v1/posts/{post}/like", {"Authorization": "Bearer not-a-jwt"}),
        ("POST", f"/v1/posts/{post}/like", {"Authorization": "Basic dTpw"}),
        ("DELETE", f"/v1/posts/{unknown}/like", h),
        ("POST", f"/v1/posts/0{post}/like", h),  # not canonical: the FastAPI route's
        ("POST", f"/v1/posts/{post}/like", {**h, "Idempotency-Key": "x" * 256}),
    ]
    answers = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for method, path, headers in requests:
            r = await client.request(method, path, headers=headers)
            text = r.text
            for value, name in ((post, "POST"), (unknown, "UNKNOWN"), (user, "USER")):
                text = text.replace(str(value), name)
            kept = {k: v for k, v in r.headers.items() if k != "content-length"}
            assert int(r.headers["content-length"]) == len(r.content)
            answers.append((r.status_code, kept, text))
    return answers


def _like_requests_by_route() -> dict[str, float]:
    """Like/unlike requests this process's apps have timed so far, by route label."""
    seen: dict[str, float] = {}
    for family in REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels["method"] in ("POST", "DELETE"):
                route = sample.labels["route"]
                seen[route] = seen.get(route, 0.0) + sample.value
    return seen


async def _serve(fast: bool, settings: CommonSettings) -> tuple[list[Any], int]:
    app = create_app(ApiSettings())
    routes = app.router.routes
    [route] = [r for r in routes if isinstance(r, FastLikeRoute)]
    taken = [0]
    if fast:
        inner: Handle = route.handle

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            taken[0] += 1
            await inner(scope, receive, send)

        route.handle = counted  # type: ignore[method-assign]
    else:
        routes.remove(route)
    with httpx.Client(base_url=settings.api_url, timeout=30) as api:
        post = register_post(api, settings)
    async with app.router.lifespan_context(app):
        answers = await _scenario(app, settings, post, fresh_id(), fresh_id())
    return answers, taken[0]


@pytest.mark.integration
def test_answers_exactly_as_the_fastapi_route(stack: CommonSettings) -> None:
    before = _like_requests_by_route()
    with collector_restored():
        fast, taken = asyncio.run(_serve(True, stack))
        documented, _ = asyncio.run(_serve(False, stack))
    after = _like_requests_by_route()
    timed = {r: n - before.get(r, 0.0) for r, n in after.items() if n != before.get(r, 0.0)}
    assert timed == {"/v1/posts/{post_id}/like": 2 * 13}, "every request timed under its route"
    assert [a[0] for a in fast] == [200, 200, 200, 200, 200, 200, 422, 401, 401, 401, 404, 200, 422]
    assert fast[5][1]["idempotent-replayed"] == "true"
    assert '"liked":true,"changed":false' in fast[1][2]
    for i, (ours, theirs) in enumerate(zip(fast, documented, strict=True)):
        assert ours == theirs, f"request {i}"
    assert taken == 11, "the last two requests are the FastAPI route's"
