"""Group commit on the real edge store: shared statements give every request exactly the
single-request result, an edge's requests apply in order, a bad row fails alone, and
under concurrency requests really share statements (the batch-size histogram)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from core.settings import CommonSettings
from ingest_api.db import make_pool
from ingest_api.group_commit import GroupCommitter
from ingest_api.likes_tx import LikeResult
from ingest_api.problems import ProblemError
from tests.conftest import auth, fresh_id, register_post

pytestmark = pytest.mark.integration


def _outbox(s: CommonSettings, post: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(s.postgres_url) as conn:
        return conn.execute(
            "SELECT user_id, edge_version, action, payload->>'edge_version' FROM like_outbox"
            " WHERE post_id = %s ORDER BY user_id, edge_version",
            (post,),
        ).fetchall()


@contextlib.asynccontextmanager
async def _committer(s: CommonSettings, **kw: Any) -> AsyncIterator[GroupCommitter]:
    """A group committer (``kw``: its options) on a pool of its own, closed afterwards."""
    pool = make_pool(s.postgres_url, min_size=1, max_size=4, timeout=5)
    await pool.open()
    writer = GroupCommitter(pool, **kw)
    try:
        yield writer
    finally:
        await writer.close()
        await pool.close()


async def _run(s: CommonSettings, calls: list[tuple[int, int, bool]]) -> list[Any]:
    async with _committer(s, max_batch=64) as writer:
        return await asyncio.gather(
            *[writer.set_like(post_id=p, user_id=u, liked=liked) for p, u, liked in calls],
            return_exceptions=True,
        )


def test_shared_statements_give_each_request_its_own_transition(
    api: httpx.Client, stack: CommonSettings
) -> None:
    post = register_post(api, stack)
    users = [fresh_id() for _ in range(30)]
    same = fresh_id()
    calls = [(post, u, True) for u in users]
    calls += [(post, same, True), (post, same, False), (post, same, True), (post, same, True)]
    calls += [(post, users[0], False), (fresh_id(), fresh_id(), True), (2**63 + 5, 1, True)]
    results = asyncio.run(_run(stack, calls))

    assert all(isinstance(r, LikeResult) and r.changed and r.version == 1 for r in results[:30])
    assert [(r.liked, r.changed, r.version) for r in results[30:34]] == [
        (True, True, 1),
        (False, True, 2),
        (True, True, 3),
        (True, False, 3),
    ], "one edge's requests apply in arrival order, each with its own version"
    assert (results[34].liked, results[34].changed, results[34].version) == (False, True, 2)
    unknown, bad = results[35], results[36]
    assert isinstance(unknown, ProblemError) and unknown.status == 404
    assert isinstance(bad, psycopg.Error), "a bad row fails alone"
    rows = _outbox(stack, post)
    assert len(rows) == 30 + 3 + 1
    assert [r[1:3] for r in rows if r[0] == same] == [
        (1, "LikeCreated"),
        (2, "LikeRemoved"),
        (3, "LikeCreated"),
    ]
    assert all(int(r[3]) == r[1] for r in rows), "the payload carries the edge version"


def _batches(api: httpx.Client) -> tuple[float, float]:
    text = api.get("/metrics").text
    count = re.search(r"^likes_api_group_commit_batch_count (\S+)$", text, re.M)
    total = re.search(r"^likes_api_group_commit_batch_sum (\S+)$", text, re.M)
    assert count and total, "the API exports the batch-size histogram"
    return float(count.group(1)), float(total.group(1))


def test_concurrent_requests_share_statements(api: httpx.Client, stack: CommonSettings) -> None:
    post = register_post(api, stack)
    users = [fresh_id() for _ in range(200)]
    count0, sum0 = _batches(api)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as c:
            return await asyncio.gather(
                *[c.post(f"/v1/posts/{post}/like", headers=auth(stack, u)) for u in users]
            )

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 and r.json()["changed"] for r in responses)
    count1, sum1 = _batches(api)
    assert sum1 - sum0 == len(users), "every request went through a shared statement"
    assert count1 - count0 < len(users), "some statements carried several requests"


async def _with_hook(
    s: CommonSettings, calls: list[tuple[int, int, bool]], *, fail: bool
) -> tuple[list[Any], list[list[LikeResult]], list[bool]]:
    """Run ``calls`` with an ``on_commit`` hook that records each batch and whether any
    request had been answered a result before the hook ran (then fails, if ``fail``)."""
    handed: list[list[LikeResult]] = []
    answered_early: list[bool] = []
    tasks: list[asyncio.Task[LikeResult]] = []

    async def hook(results: list[LikeResult]) -> None:
        handed.append(results)
        answered_early.append(any(t.done() and t.exception() is None for t in tasks))
        if fail:
            raise RuntimeError("the viewer cache is broken")

    async with _committer(s, max_batch=64, on_commit=hook) as writer:
        for p, u, liked in calls:
            tasks.append(asyncio.create_task(writer.set_like(post_id=p, user_id=u, liked=liked)))
        return list(await asyncio.gather(*tasks, return_exceptions=True)), handed, answered_early


def test_committed_results_are_handed_on_before_any_request_is_answered(
    api: httpx.Client, stack: CommonSettings
) -> None:
    post = register_post(api, stack)
    users = [fresh_id() for _ in range(20)]
    calls = [(post, u, True) for u in users] + [(fresh_id(), fresh_id(), True)]
    results, handed, early = asyncio.run(_with_hook(stack, calls, fail=False))
    assert isinstance(results[-1], ProblemError) and results[-1].status == 404
    assert [r.user_id for batch in handed for r in batch] == users, "only committed results"
    assert results[:20] == [r for batch in handed for r in batch]
    assert not any(early), "no request was answered before its batch was handed on"

    # a hook that fails: the transitions committed, their requests learn the failure
    other = [fresh_id() for _ in range(5)]
    results, handed, _ = asyncio.run(_with_hook(stack, [(post, u, True) for u in other], fail=True))
    assert all(isinstance(r, RuntimeError) for r in results)
    assert sorted(r.user_id for batch in handed for r in batch) == sorted(other)
    with psycopg.connect(stack.postgres_url) as conn:
        liked = conn.execute(
            "SELECT count(*) FROM post_likes WHERE post_id = %s AND user_id = ANY(%s)"
            " AND state = 'liked'",
            (post, other),
        ).fetchone()
    assert liked == (5,), "committed all the same (the outcome reported as unknown)"


async def _checked(
    s: CommonSettings, post: int, checks_s: dict[int, float], *, wait_s: float, max_batch: int
) -> tuple[list[list[int]], float]:
    """Requests that enter the API together, user ``u`` spending ``checks_s[u]`` on its
    way to the committer (marked ``arriving``, as the rate limit and the key's claim
    are), through a committer that waits up to ``wait_s``: the users of each committed
    batch, and how long the request with the shortest checks took."""
    batches: list[list[int]] = []

    async def hook(results: list[LikeResult]) -> None:
        batches.append([r.user_id for r in results])

    async def request(writer: GroupCommitter, user: int) -> LikeResult:
        with writer.arriving():
            await asyncio.sleep(checks_s[user])
        return await writer.set_like(post_id=post, user_id=user, liked=True)

    loop = asyncio.get_running_loop()
    async with _committer(s, max_batch=max_batch, on_commit=hook, wait_s=wait_s) as writer:
        t0 = loop.time()
        tasks = {u: asyncio.create_task(request(writer, u)) for u in checks_s}
        await tasks[min(checks_s, key=checks_s.__getitem__)]
        first = loop.time() - t0
        await asyncio.gather(*tasks.values())
        return batches, first


def _ids(n: int) -> list[int]:
    return [fresh_id() for _ in range(n)]


def test_a_batch_waits_only_for_requests_already_on_their_way(
    api: httpx.Client, stack: CommonSettings
) -> None:
    post = register_post(api, stack)
    # four requests in their checks for 0-30 ms: the first waits for the others and goes
    # as soon as the last has joined, well before the bound
    users = _ids(4)
    spread = {u: 0.01 * i for i, u in enumerate(users)}
    batches, first = asyncio.run(_checked(stack, post, spread, wait_s=1.0, max_batch=64))
    assert batches == [users], "requests on their way share the first one's batch"
    assert 0.03 <= first < 0.5
    # nothing else on its way: a lone request is not held, whatever the bound
    alone = _ids(1)
    batches, first = asyncio.run(_checked(stack, post, {alone[0]: 0}, wait_s=5.0, max_batch=64))
    assert batches == [alone] and first < 1.0
    # a request slow in its checks holds the batch no longer than the bound
    fast, slow = _ids(2)
    batches, first = asyncio.run(
        _checked(stack, post, {fast: 0, slow: 1.5}, wait_s=0.2, max_batch=64)
    )
    assert batches == [[fast], [slow]] and 0.2 <= first < 1.0
    # without a wait the first goes alone; with max_batch already queued there is no wait
    batches, first = asyncio.run(_checked(stack, post, dict(spread), wait_s=0, max_batch=64))
    assert batches[0] == [users[0]] and first < 0.5
    full = _ids(2)
    started = time.monotonic()
    batches, _ = asyncio.run(
        _checked(stack, post, dict.fromkeys(full, 0.0), wait_s=5.0, max_batch=1)
    )
    assert batches == [[u] for u in full] and time.monotonic() - started < 2.0
