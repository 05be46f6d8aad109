"""``kill -9`` of the API under load, restarted by the supervisor alone: no acknowledged
like lost, none applied twice."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import psycopg
import pytest

from core.settings import CommonSettings
from tests.conftest import fresh_id, token
from tests.e2e.pipeline import new_posts
from tests.faults.kill import kill_and_wait

pytestmark = pytest.mark.integration


async def _like_until_acked(
    c: httpx.AsyncClient,
    s: CommonSettings,
    post: int,
    user: int,
    acked: dict[tuple[int, int], dict[str, object]],
) -> None:
    headers = {"Authorization": f"Bearer {token(s, user)}", "Idempotency-Key": str(uuid.uuid4())}
    for _ in range(600):
        try:
            r = await c.post(f"/v1/posts/{post}/like", headers=headers)
        except httpx.TransportError:
            await asyncio.sleep(0.1)
            continue
        if r.status_code == 200:
            acked[(post, user)] = r.json()
            return
        await asyncio.sleep(0.1)  # 409 (claim of the killed request) or 503: retry
    raise AssertionError(f"like {post}:{user} never acknowledged")


def test_kill_api_under_load(stack: CommonSettings) -> None:
    posts = new_posts(stack, 20)
    edges = [(posts[i % len(posts)], fresh_id()) for i in range(1500)]
    acked: dict[tuple[int, int], dict[str, object]] = {}

    async def load() -> None:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as c:
            sem = asyncio.Semaphore(24)

            async def one(post: int, user: int) -> None:
                async with sem:
                    await _like_until_acked(c, stack, post, user, acked)

            await asyncio.gather(*[one(p, u) for p, u in edges])

    killer_done = threading.Event()

    def killer() -> None:
        while len(acked) < 300:
            time.sleep(0.05)
        kill_and_wait(stack, "api")
        killer_done.set()

    t = threading.Thread(target=killer)
    t.start()
    asyncio.run(load())
    t.join()
    assert killer_done.is_set()
    assert len(acked) == len(edges)
    with psycopg.connect(stack.postgres_url) as conn:
        rows = conn.execute(
            "SELECT e.post_id, e.user_id, e.state, e.version, "
            " (SELECT count(*) FROM like_outbox o WHERE o.post_id = e.post_id "
            "  AND o.user_id = e.user_id) FROM post_likes e WHERE e.post_id = ANY(%s)",
            (posts,),
        ).fetchall()
    by_edge = {(p, u): (state, v, n) for p, u, state, v, n in rows}
    lost = [e for e in edges if e not in by_edge or by_edge[e][0] != "liked"]
    twice = [e for e, (_, v, n) in by_edge.items() if v != 1 or n != 1]
    assert not lost, f"{len(lost)} acknowledged likes lost"
    assert not twice, f"{len(twice)} likes applied more than once"
    assert all(a["liked"] and a["version"] == 1 for a in acked.values())
