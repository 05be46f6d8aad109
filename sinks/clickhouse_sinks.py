"""ClickHouse analytics sinks: like events, window rows, hot-post episodes.

Guarantee: exactly-once effect under replay, as analysts see it. Every table is a
ReplacingMergeTree keyed on the row's identity (``event_id``; post, window and part;
post and episode start) with a version that only grows, and analysts read views that
apply ``FINAL``: a replayed row replaces its earlier copy, never adds to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from core.records import Accepted, HotChange, WindowPart
from sinks import clickhouse_store

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


class _ClickHousePartition(StatelessSinkPartition[T], Generic[T]):
    def __init__(self, url: str, table: str, to_row: Callable[[T], Sequence[Any]]) -> None:
        self._url, self._table, self._to_row = url, table, to_row

    def write_batch(self, items: list[T]) -> None:
        clickhouse_store.insert(
            self._url, self._table, [self._to_row(i) for i in items], TABLES[self._table]
        )

    def close(self) -> None:
        return None


class ClickHouseSink(DynamicSink[T], Generic[T]):
    """Rows into one ClickHouse table."""

    def __init__(self, url: str, table: str, to_row: Callable[[T], Sequence[Any]]) -> None:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        self._url, self._table, self._to_row = url, table, to_row

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ClickHousePartition[T]:
        clickhouse_store.ensure_schema(self._url)
        return _ClickHousePartition(self._url, self._table, self._to_row)
