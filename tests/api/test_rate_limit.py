"""Per-user rate limit on mutations: 429 with Retry-After past the limit; concurrent
checks share one Redis call and still count each request once, in order; it fails
open."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from core.settings import ApiSettings, CommonSettings
from ingest_api.problems import ProblemError
from ingest_api.ratelimit import RateLimiter
from tests.conftest import auth, fresh_id, register_post

pytestmark = pytest.mark.integration


def test_rate_limit_429_with_retry_after(api: httpx.Client, stack: CommonSettings) -> None:
    limit = ApiSettings().rate_limit_requests
    post, user = register_post(api, stack), fresh_id()
    h = auth(stack, user)
    # twice the limit: whatever window boundary falls inside, one window overflows
    codes = [api.post(f"/v1/posts/{post}/like", headers=h) for _ in range(2 * limit + 5)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, "no request was limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].headers["content-type"].startswith("application/problem+json")
    other = api.post(f"/v1/posts/{post}/like", headers=auth(stack, fresh_id()))
    assert other.status_code == 200, "limits are per user"


async def _burst(s: CommonSettings, calls: list[int], *, limit: int) -> tuple[list[int], int]:
    """Concurrent checks (one turn of the event loop); their statuses and Redis calls."""
    client = aioredis.Redis.from_url(s.redis_url)
    sent = 0
    real = client.evalsha

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        return await real(*args, **kwargs)

    client.evalsha = counted  # type: ignore[method-assign]  # counts calls to the real Redis
    limiter = RateLimiter(client, limit=limit, window_s=3600)

    async def one(user: int) -> int:
        try:
            await limiter.check(user)
        except ProblemError as e:
            return e.status
        return 200

    try:
        await client.ping()
        return list(await asyncio.gather(*[one(u) for u in calls])), sent
    finally:
        await client.aclose()


def test_concurrent_checks_share_one_call_and_count_each_request_once(
    stack: CommonSettings,
) -> None:
    a, b = fresh_id(), fresh_id()
    statuses, sent = asyncio.run(_burst(stack, [a] * 12 + [b] * 3, limit=5))
    assert statuses[:12] == [200] * 5 + [429] * 7, "the first five of the window pass, in order"
    assert statuses[12:] == [200] * 3, "limits are per user"
    assert sent == 1, "one Redis call for the checks of one turn"
    window = int(time.time() // 3600)
    r = redis.Redis.from_url(stack.redis_url)
    assert int(r.get(f"likes:rl:{a}:{window}") or 0) == 12, "every request counted once"
    assert 0 < r.ttl(f"likes:rl:{a}:{window}") <= 7200
    # later turns go on counting where the window stands
    statuses, sent = asyncio.run(_burst(stack, [b] * 3, limit=5))
    assert statuses == [200, 200, 429] and sent == 1


def test_an_unreachable_redis_lets_every_request_through(stack: CommonSettings) -> None:
    async def run() -> list[None]:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        limiter, user = RateLimiter(client, limit=1, window_s=60), fresh_id()
        try:
            return list(await asyncio.gather(*[limiter.check(user) for _ in range(3)]))
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [None, None, None]


def test_an_unexpected_failure_reaches_the_waiting_requests_and_ends_quietly() -> None:
    """A failure that is not Redis' (a bug in the call) is each waiting request's error,
    and the background task that made the call ends without an unretrieved exception."""

    async def run() -> tuple[list[BaseException | None], list[dict[str, object]]]:
        loop = asyncio.get_running_loop()
        unhandled: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
        limiter = RateLimiter(client, limit=5, window_s=60)

        async def broken(**_kw: object) -> list[int]:
            raise ValueError("bad script arguments")

        limiter._count = broken  # type: ignore[assignment]
        try:
            got = await asyncio.gather(
                *[limiter.check(7) for _ in range(3)], return_exceptions=True
            )
            await asyncio.sleep(0)
            return [g if isinstance(g, BaseException) else None for g in got], unhandled
        finally:
            await client.aclose()

    errors, unhandled = asyncio.run(run())
    assert [type(e) for e in errors] == [ValueError] * 3
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert not unhandled, unhandled
