"""ClickHouse analytics sinks: like events, window rows, hot-post episodes.

Guarantee: exactly-once effect under replay, as analysts see it. Every table is a
ReplacingMergeTree keyed on the row's identity (``event_id``; post, window and part;
post and episode start); window parts and episodes carry a version that only grows (an
event never changes). Analysts read views that apply ``FINAL``: a replayed row replaces
its earlier copy, never adds to it, and an older version never replaces a newer one.

Test hook: a sink given ``fault_file`` (production: ``<home>/faults/clickhouse.json``,
see :mod:`sinks.faults`) reads it before every batch, so an end-to-end test can make
the live analytics flow's ClickHouse writes 10 times slower (``{"slowdown": 10}``) or
failing (``{"fail": true}``, retried as a transient error) and remove the file to end
it. Without the file nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from core.records import Accepted, HotChange, WindowPart
from sinks import clickhouse_store
from sinks.base import DEFAULT_RETRY, RetryPolicy, StoreSink, reporting
from sinks.faults import InjectedFault, with_fault

T = TypeVar("T")


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def event_row(a: Accepted) -> Sequence[Any]:
    """A ``like_events_raw`` row."""
    return (
        a.event_id,
        a.action,
        a.post_id,
        a.user_id,
        a.version,
        _ts(a.occurred_ms),
        a.delta,
    )


def window_row(w: WindowPart) -> Sequence[Any]:
    """A ``post_like_window_parts`` row."""
    return (
        w.post_id,
        _ts(w.window_start_ms),
        _ts(w.window_end_ms),
        w.part,
        w.likes,
        w.unlikes,
        w.version,
    )


def hot_row(h: HotChange) -> Sequence[Any]:
    """A ``hot_post_episodes`` row."""
    cooled = _ts(h.cooled_at_ms) if h.cooled_at_ms is not None else None
    return (h.post_id, _ts(h.became_hot_at_ms), cooled, h.peak_rate, h.version)


TABLES: dict[str, list[str]] = {
    "like_events_raw": [
        "event_id",
        "action",
        "post_id",
        "user_id",
        "edge_version",
        "occurred_at",
        "delta",
    ],
    "post_like_window_parts": [
        "post_id",
        "window_start",
        "window_end",
        "part",
        "likes",
        "unlikes",
        "version",
    ],
    "hot_post_episodes": ["post_id", "became_hot_at", "cooled_at", "peak_rate", "version"],
}


SINK_NAMES = {
    "like_events_raw": "clickhouse_like_events",
    "post_like_window_parts": "clickhouse_windows",
    "hot_post_episodes": "clickhouse_hot_posts",
}

# Embedded chDB runs in this process: there is no connection to lose, and an insert that
# failed fails again on the same engine with the same rows, so only pressure that time
# relieves is transient: too many parts (background merges catch up) and the memory limit
# (other queries finish).
EMBEDDED_TRANSIENT_CODES = frozenset({241, 252})  # MEMORY_LIMIT_EXCEEDED, TOO_MANY_PARTS


def is_transient(url: str, error: Exception) -> bool:
    """Server: transport errors and the server's own error answers, not client-side
    mistakes (``ProgrammingError``, ``DataError``). Embedded: see ``EMBEDDED_TRANSIENT_CODES``.
    An injected fault (the test hook) is transient, as an outage would be."""
    if isinstance(error, InjectedFault):
        return True
    if clickhouse_store.is_embedded(url):
        return isinstance(error, DatabaseError) and error.code in EMBEDDED_TRANSIENT_CODES
    return isinstance(error, OperationalError) or type(error) is DatabaseError


def insert_retrying(
    url: str,
    table: str,
    rows: list[tuple[Any, ...]],
    columns: list[str],
    retry: RetryPolicy = DEFAULT_RETRY,
) -> None:
    """Insert ``rows`` as the sinks do: an error the store may get over
    (:func:`is_transient`: too many parts, the memory limit, a server's outage) is
    retried within ``retry``'s budget, each retry reported as ``<sink>_repair``. A
    refused insert wrote nothing, so a retried one lands once (correction rows:
    ``ops.reconcile``)."""
    retry.retrying(
        lambda e: isinstance(e, Exception) and is_transient(url, e),
        reporting(f"{SINK_NAMES.get(table, table)}_repair"),
    )(clickhouse_store.insert, url, table, rows, columns)


class ClickHouseSink(StoreSink[T, str]):
    """Rows into one ClickHouse table (``to_row`` maps each item); the client is the
    process's own for ``url`` (``sinks.clickhouse_store``), shared with its readers.
    ``fault_file``: the test hook (module docstring)."""

    def __init__(
        self,
        url: str,
        table: str,
        to_row: Callable[[T], Sequence[Any]],
        retry: RetryPolicy = DEFAULT_RETRY,
        *,
        fault_file: Path | None = None,
    ) -> None:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        super().__init__(SINK_NAMES[table], retry)
        self.url, self.table, self.to_row = url, table, to_row
        self.fault_file = fault_file

    def connect(self) -> str:
        clickhouse_store.ensure_schema(self.url)
        return self.url

    def disconnect(self, client: str) -> None:
        """Nothing to release: the process's client outlives any one sink."""

    def is_transient(self, error: Exception) -> bool:
        return is_transient(self.url, error)

    def write(self, client: str, items: list[T]) -> None:
        rows = [self.to_row(i) for i in items]
        with_fault(
            self.fault_file,
            lambda: clickhouse_store.insert(client, self.table, rows, TABLES[self.table]),
        )
