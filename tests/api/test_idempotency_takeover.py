"""An attempt whose Idempotency-Key claim a retry took over changes nothing: not alone,
not in a shared statement, and not when the takeover commits while the attempt's
statement is already waiting on the record. A failed attempt releases only its own
claim."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import AsyncConnection

from core.settings import CommonSettings
from ingest_api import idempotency
from ingest_api.db import make_pool
from ingest_api.group_commit import GroupCommitter
from ingest_api.likes_tx import LOST_CLAIM, LikeResult, set_like
from ingest_api.problems import ProblemError
from tests.conftest import fresh_id, register_post

pytestmark = pytest.mark.integration

FP = idempotency.fingerprint("POST", "/v1/posts/1/like")
Apply = Callable[[int, int, str, uuid.UUID], Awaitable[LikeResult]]


def _edge_and_outbox(s: CommonSettings, post: int, user: int) -> tuple[Any, int]:
    with psycopg.connect(s.postgres_url) as conn:
        edge = conn.execute(
            "SELECT state, version FROM post_likes WHERE post_id = %s AND user_id = %s",
            (post, user),
        ).fetchone()
        (rows,) = conn.execute(
            "SELECT count(*) FROM like_outbox WHERE post_id = %s AND user_id = %s", (post, user)
        ).fetchone() or (0,)
    return edge, int(rows)


def _record(s: CommonSettings, user: int, key: str) -> tuple[Any, ...] | None:
    with psycopg.connect(s.postgres_url) as conn:
        return conn.execute(
            "SELECT claim_token, status_code FROM idempotency_keys"
            " WHERE user_id = %s AND idem_key = %s",
            (user, key),
        ).fetchone()


async def _claim(conn: AsyncConnection, user: int, key: str, token: uuid.UUID) -> None:
    replay = await idempotency.claim(
        conn, user_id=user, key=key, fp=FP, stale_s=30, ttl_h=24, token=token
    )
    assert replay is None, "claimed (or taken over)"


async def _make_stale(conn: AsyncConnection, user: int, key: str) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '1 minute'"
        " WHERE user_id = %s AND idem_key = %s",
        (user, key),
    )


async def _scenario(s: CommonSettings, post: int, apply: Apply) -> None:
    user, key = fresh_id(), f"takeover-{uuid.uuid4()}"
    first, retry = uuid.uuid4(), uuid.uuid4()
    async with await AsyncConnection.connect(s.postgres_url, autocommit=True) as conn:
        await _claim(conn, user, key, first)
        await _make_stale(conn, user, key)
        await _claim(conn, user, key, retry)  # the stale claim is the retry's now

        with pytest.raises(ProblemError) as lost:
            await apply(post, user, key, first)
        assert (lost.value.status, lost.value.detail) == (409, LOST_CLAIM)
        assert _edge_and_outbox(s, post, user) == (None, 0), "the first attempt wrote nothing"

        await idempotency.release(conn, user_id=user, key=key, token=first)
        assert _record(s, user, key) == (retry, None), "its release leaves the retry's claim"

        done = await apply(post, user, key, retry)
        assert (done.liked, done.changed, done.version) == (True, True, 1)
        assert _edge_and_outbox(s, post, user) == (("liked", 1), 1)
        assert _record(s, user, key) == (retry, 200)


def test_an_attempt_whose_claim_was_taken_over_changes_nothing(
    api: httpx.Client, stack: CommonSettings
) -> None:
    post = register_post(api, stack)

    async def alone(post: int, user: int, key: str, token: uuid.UUID) -> LikeResult:
        async with await AsyncConnection.connect(stack.postgres_url, autocommit=True) as c:
            return await set_like(
                c, post_id=post, user_id=user, liked=True, idem_key=key, claim_token=token
            )

    async def shared(post: int, user: int, key: str, token: uuid.UUID) -> LikeResult:
        pool = make_pool(stack.postgres_url, min_size=1, max_size=2, timeout=5)
        await pool.open()
        writer = GroupCommitter(pool, max_batch=64)
        try:  # with a neighbour without a key in the same statement, which applies
            results = await asyncio.gather(
                writer.set_like(
                    post_id=post, user_id=user, liked=True, idem_key=key, claim_token=token
                ),
                writer.set_like(post_id=post, user_id=fresh_id(), liked=True),
                return_exceptions=True,
            )
        finally:
            await writer.close()
            await pool.close()
        mine, neighbour = results
        assert isinstance(neighbour, LikeResult) and neighbour.changed
        if isinstance(mine, BaseException):
            raise mine
        return mine

    asyncio.run(_scenario(stack, post, alone))
    asyncio.run(_scenario(stack, post, shared))


def test_a_takeover_committed_while_the_attempt_waits_on_the_record_wins(
    api: httpx.Client, stack: CommonSettings
) -> None:
    """The attempt's statement locks the record: a takeover in flight makes it wait, and
    once the takeover commits the attempt sees the new token and writes nothing."""
    post = register_post(api, stack)
    user, key = fresh_id(), f"takeover-race-{uuid.uuid4()}"
    first, retry = uuid.uuid4(), uuid.uuid4()

    async def race() -> None:
        url = stack.postgres_url
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            await _claim(conn, user, key, first)
            async with await AsyncConnection.connect(url) as taker:  # a transaction
                await taker.execute(
                    "UPDATE idempotency_keys SET claim_token = %s"
                    " WHERE user_id = %s AND idem_key = %s",
                    (retry, user, key),
                )
                attempt = asyncio.create_task(
                    set_like(
                        conn,
                        post_id=post,
                        user_id=user,
                        liked=True,
                        idem_key=key,
                        claim_token=first,
                    )
                )
                await asyncio.sleep(0.5)
                assert not attempt.done(), "the attempt waits for the record's lock"
                await taker.commit()
            with pytest.raises(ProblemError) as lost:
                await attempt
            assert lost.value.status == 409

    asyncio.run(race())
    assert _edge_and_outbox(stack, post, user) == (None, 0)
    assert _record(stack, user, key) == (retry, None)
