"""What every Redis sink shares: one client per partition and which errors are transient.

A lost or timed-out connection, or a server still loading its data set, is transient:
the base retries the batch on a fresh client (every Redis sink writes absolute values,
so a replay is harmless). The client itself never retries, so each retry is counted
once, by the base. Refused authentication and every command error are permanent.
"""

from __future__ import annotations

from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sinks.base import DEFAULT_RETRY, RetryPolicy, StoreSink

T = TypeVar("T")


def connect_redis(url: str) -> redis.Redis:
    """A client for ``url`` that leaves retrying to the sink base (no I/O until used)."""
    return redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0)
    )


def is_transient(error: Exception) -> bool:
    """Connection lost, timed out, or the server still loading; not a refused login."""
    return isinstance(error, redis.ConnectionError | redis.TimeoutError) and not isinstance(
        error, redis.AuthenticationError
    )


class RedisSink(StoreSink[T, redis.Redis]):
    """A sink whose client is a plain Redis client for ``url``."""

    def __init__(self, name: str, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__(name, retry)
        self.url = url

    def connect(self) -> redis.Redis:
        return connect_redis(self.url)

    def disconnect(self, client: redis.Redis) -> None:
        client.close()

    def is_transient(self, error: Exception) -> bool:
        return is_transient(error)
