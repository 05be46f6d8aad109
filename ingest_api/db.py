"""The edge store connection pool, with driver errors translated at the boundary.

An unreachable or failing store becomes :class:`EdgeStoreUnavailable` (HTTP 503);
every statement of one request runs in one transaction, so nothing is half-written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ingest_api.problems import ProblemError


class EdgeStoreUnavailable(ProblemError):
    """The edge store cannot be reached or failed transiently."""

    def __init__(self, detail: str = "the edge store is unavailable") -> None:
        super().__init__(503, detail, headers={"Retry-After": "1"})


def make_pool(url: str, *, min_size: int, max_size: int, timeout: float) -> AsyncConnectionPool:
    """A pool that does no I/O until opened."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
        check=AsyncConnectionPool.check_connection,
    )


@asynccontextmanager
async def connection(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """A pooled autocommit connection; store failures become 503."""
    try:
        async with pool.connection() as conn:
            yield conn
    except PoolTimeout as e:
        raise EdgeStoreUnavailable("no edge store connection available") from e
    except psycopg.OperationalError as e:
        raise EdgeStoreUnavailable() from e
    except psycopg.errors.SerializationFailure as e:
        raise EdgeStoreUnavailable("edge store conflict, retry") from e
