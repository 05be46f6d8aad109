"""The edge store connection pool, with driver errors translated at the boundary.

An unreachable or failing store becomes :class:`EdgeStoreUnavailable` (HTTP 503);
every statement of one request runs in one transaction, so nothing is half-written.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ingest_api.problems import ProblemError

log = logging.getLogger(__name__)


class EdgeStoreUnavailable(ProblemError):
    """The edge store cannot be reached or failed transiently."""

    def __init__(self, detail: str = "the edge store is unavailable") -> None:
        super().__init__(503, detail, headers={"Retry-After": "1"})


RECONNECT_TIMEOUT_S = 5.0
"""How long the pool retries one lost connection (backoff 1, 2, 4 s, capped) before it
gives up on it; a request then waiting grows the pool again with an immediate attempt.
psycopg_pool's default (5 minutes of doubling delays) left the API answering 503 for
about half as long as Postgres had been down, after it was back; with this, at most
about 5 s (``tests/faults/test_store_outages.py``)."""

_last_used: weakref.WeakKeyDictionary[AsyncConnection, float] = weakref.WeakKeyDictionary()
IDLE_CHECK_S = 2.0
APPLICATION_NAME = "likes-api"
"""Every API session's ``application_name``: an erasure waits for these sessions' older
transactions to end (``ops.erasure``)."""


async def _check_if_idle(conn: AsyncConnection) -> None:
    """Probe a connection only if it sat idle: busy ones just proved themselves."""
    if time.monotonic() - _last_used.get(conn, 0.0) > IDLE_CHECK_S:
        await AsyncConnectionPool.check_connection(conn)


_flushes: weakref.WeakKeyDictionary[AsyncConnectionPool, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)  # the running check of each pool (holds the task until the next one)


def flush_lost(pool: AsyncConnectionPool) -> None:
    """One of ``pool``'s connections was found lost (a restarted server loses them all):
    probe every idle one now, replacing the broken, in the background. Otherwise
    psycopg_pool finds them one per checkout, waiting 1 s, then 2 s, before the next, so
    a request could time out on a pool of dead connections with the server back."""
    running = _flushes.get(pool)
    if running is None or running.done():
        _flushes[pool] = asyncio.get_running_loop().create_task(_flush(pool))


async def _flush(pool: AsyncConnectionPool) -> None:
    try:
        await pool.check()
    except Exception as e:  # the server may be down again: later checkouts retry
        log.warning("checking the pool's connections failed: %s", e)


async def _mark_used(conn: AsyncConnection) -> None:
    _last_used[conn] = time.monotonic()


async def configure_session(conn: AsyncConnection) -> None:
    """Session settings of every API connection: no JIT.

    The API runs short statements; JIT compilation costs hundreds of milliseconds
    whenever a plan's estimate crosses ``jit_above_cost``, as the bounded ``liked_by``
    statement's can (its estimates do not know its LIMITs are small).
    """
    await conn.execute("SET jit = off")


async def configure_writer_session(conn: AsyncConnection) -> None:
    """Session settings of the group committer's connections: no JIT, generic plans.

    Postgres plans a prepared statement afresh on every call while it estimates a custom
    plan cheaper than the generic one, as it does for the group commit's statement
    (array parameters, a dozen CTEs). Its plan does not depend on the values
    (primary-key lookups per row of the unnested arrays), so the writer always uses the
    generic one: measured, a quarter of the backend CPU per 3-row batch (213 against
    773-833 µs) and 44% less Postgres CPU per like for the whole system at 400 likes/s.
    Reads keep custom plans: ``liked_by``'s bounded scans do depend on their values.
    """
    await configure_session(conn)
    await conn.execute("SET plan_cache_mode = force_generic_plan")


def make_pool(
    url: str, *, min_size: int, max_size: int, timeout: float, writer: bool = False
) -> AsyncConnectionPool:
    """A pool that does no I/O until opened (``writer``: sessions for group commit)."""
    made: list[AsyncConnectionPool] = []

    async def check(conn: AsyncConnection) -> None:
        try:
            await _check_if_idle(conn)
        except psycopg.Error:
            flush_lost(made[0])
            raise

    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(timeout)),
            "application_name": APPLICATION_NAME,
        },
        configure=configure_writer_session if writer else configure_session,
        check=check,
        reset=_mark_used,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
    )
    made.append(pool)
    return pool


@asynccontextmanager
async def connection(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """A pooled autocommit connection; store failures become 503."""
    try:
        async with pool.connection() as conn:
            yield conn
    except PoolTimeout as e:
        raise EdgeStoreUnavailable("no edge store connection available") from e
    except psycopg.OperationalError as e:
        flush_lost(pool)
        raise EdgeStoreUnavailable() from e
    except psycopg.errors.SerializationFailure as e:
        raise EdgeStoreUnavailable("edge store conflict, retry") from e
