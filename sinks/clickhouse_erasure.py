"""Erasure in ClickHouse: a user's id leaves ``like_events`` and never comes back.

Guarantees:

- :func:`erase_user` records the user in ``likes.erased_users`` and rewrites every
  ``like_events_raw`` row of theirs to ``user_id = 0`` (a synchronous mutation): the
  events stay, anonymous, so ``delta`` totals per post and every window are unchanged.
  It is idempotent and returns the rows still carrying the id (0 when done).
- :class:`ErasedUsers` lets the ``like_events`` writer store an erased user's events
  with ``user_id = 0`` too, so a replay of old Kafka events after the erasure writes no
  id. It re-reads the set at most every ``ttl_s``; :func:`erase_user` refreshes the
  process's own copy at once, and a writer in another process (a ClickHouse server
  shared by processes) sees it within ``ttl_s``, which is why ``ops.erasure`` waits
  that long before rewriting the rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sinks import clickhouse_store

ERASED_TTL_S = 5.0
_USER_ID_COLUMN = 3  # in like_events_raw rows (sinks.clickhouse_sinks.TABLES)


class ErasedUsers:
    """The erased user ids of one store, re-read at most every ``ttl_s``."""

    def __init__(self, url: str, ttl_s: float = ERASED_TTL_S) -> None:
        self.url, self.ttl_s = url, ttl_s
        self._ids: frozenset[int] = frozenset()
        self._read_at = -float("inf")
        self._invalidations = 0
        self._read_after = -1  # the invalidations the set held had seen
        self._lock = threading.Lock()  # one reader at a time; taken before the store's

    def ids(self) -> frozenset[int]:
        """The current set (read from the store when older than ``ttl_s`` or invalidated
        since, also while it was being read)."""
        with self._lock:
            seen = self._invalidations
            if seen != self._read_after or time.monotonic() - self._read_at >= self.ttl_s:
                client = clickhouse_store.get_client(self.url)
                with clickhouse_store.LOCK:
                    rows = client.query("SELECT user_id FROM likes.erased_users").result_rows
                self._ids = frozenset(int(r[0]) for r in rows)
                self._read_at, self._read_after = time.monotonic(), seen
            return self._ids

    def invalidate(self) -> None:
        """Re-read on the next call. Takes no lock: ``erase_user`` calls it holding the
        store's lock, which a reading :meth:`ids` waits for while holding its own (the
        two once deadlocked the analytics flow's writers)."""
        self._invalidations += 1


_registry: dict[str, ErasedUsers] = {}
_registry_lock = threading.Lock()


def erased_users(url: str) -> ErasedUsers:
    """The process's :class:`ErasedUsers` for ``url``."""
    with _registry_lock:
        if url not in _registry:
            _registry[url] = ErasedUsers(url)
        return _registry[url]


def anonymizing(url: str, to_row: Callable[[Any], Sequence[Any]]) -> Callable[[Any], Sequence[Any]]:
    """``to_row`` for ``like_events_raw``, with an erased user's id replaced by 0."""

    def row(item: Any) -> Sequence[Any]:
        values = to_row(item)
        if values[_USER_ID_COLUMN] in erased_users(url).ids():
            values = (*values[:_USER_ID_COLUMN], 0, *values[_USER_ID_COLUMN + 1 :])
        return values

    return row


def erase_user(url: str, user_id: int) -> int:
    """Record ``user_id`` as erased and anonymize their rows; rows left with the id."""
    clickhouse_store.ensure_schema(url)
    client = clickhouse_store.get_client(url)
    params = {"u": user_id}
    with clickhouse_store.LOCK:
        client.command(
            "INSERT INTO likes.erased_users SELECT {u:UInt64}, now64(3)", parameters=params
        )
        erased_users(url).invalidate()
        client.command(
            "ALTER TABLE likes.like_events_raw UPDATE user_id = 0 WHERE user_id = {u:UInt64}",
            parameters=params,
            settings={"mutations_sync": 2},
        )
        left = client.query(
            "SELECT count() FROM likes.like_events_raw WHERE user_id = {u:UInt64}",
            parameters=params,
        ).result_rows
    return int(left[0][0])
