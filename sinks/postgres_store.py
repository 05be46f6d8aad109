"""What every Postgres sink shares: one autocommit connection per partition, and which
errors are transient.

``psycopg.OperationalError`` is transient: a lost connection, a server restarting or
shutting down, a cancelled statement, a serialization failure or deadlock. The base
retries the batch on a fresh connection; every Postgres sink writes one batch in one
transaction, so a failed attempt left nothing behind. Everything else (a missing table,
a constraint violation, bad data) is permanent.
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg

from sinks.base import DEFAULT_RETRY, RetryPolicy, StoreSink

T = TypeVar("T")
Connection = psycopg.Connection[Any]


class PostgresSink(StoreSink[T, Connection]):
    """A sink whose client is an autocommit connection to ``url``."""

    def __init__(self, name: str, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__(name, retry)
        self.url = url

    def connect(self) -> Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def disconnect(self, client: Connection) -> None:
        client.close()

    def is_transient(self, error: Exception) -> bool:
        return isinstance(error, psycopg.OperationalError)
