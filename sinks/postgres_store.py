"""What every Postgres sink shares: one autocommit connection per partition, and which
errors are transient.

``psycopg.OperationalError`` is transient: a lost connection, a server restarting or
shutting down, a cancelled statement, a serialization failure or deadlock. The base
retries the batch on a fresh connection; every Postgres sink writes one batch in one
transaction, so a failed attempt left nothing behind. So is the end of a session that
sat idle inside a transaction for ``IDLE_IN_TRANSACTION_S`` (its process stopped or
starved): Postgres ends it rather than let its row locks hold up the live flows or a
backfill writing the same rows, and the batch is retried. Everything else (a missing
table, a constraint violation, bad data) is permanent.
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinks.base import DEFAULT_RETRY, RetryPolicy, StoreSink

T = TypeVar("T")
Connection = psycopg.Connection[Any]
IDLE_IN_TRANSACTION_S = 10
TRANSIENT = (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout)
"""Errors after which a statement is retried on a new connection (the sinks here, and
the backfill's chunk reads)."""


class PostgresSink(StoreSink[T, Connection]):
    """A sink whose client is an autocommit connection to ``url``."""

    def __init__(self, name: str, url: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__(name, retry)
        self.url = url

    def connect(self) -> Connection:
        own = conninfo_to_dict(self.url).get("options") or ""
        idle = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S * 1000}"
        url = make_conninfo(self.url, options=f"{own} {idle}".strip())
        return psycopg.connect(url, autocommit=True, connect_timeout=5)

    def disconnect(self, client: Connection) -> None:
        client.close()

    def is_transient(self, error: Exception) -> bool:
        return isinstance(error, TRANSIENT)
