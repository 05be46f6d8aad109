"""One contract case per sink: the batch, the exact state it must leave, how to read it.

Every case uses ids from ``fresh_id`` (or a fresh topic), so it never touches the running
pipeline's data, and its cleanup removes what it wrote to the shared stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import redis
from bytewax.outputs import DynamicSink

from core.records import (
    Accepted,
    CountUpdate,
    DeadLetter,
    HotChange,
    NotificationUpdate,
    RecentLikers,
    WindowPart,
)
from core.settings import CommonSettings
from flows.decode import dead_letter_record, hot_record
from schemas.redis_keys import (
    HOT_KEY,
    TRENDING_KEY,
    count_key,
    count_seq_key,
    recent_key,
    recent_seq_key,
)
from sinks import clickhouse_store
from sinks.clickhouse_sinks import ClickHouseSink, event_row, hot_row, window_row
from sinks.kafka_topic import KafkaRecord, KafkaTopicSink
from sinks.postgres_counts import PostgresCountSink
from sinks.postgres_notifications import PostgresNotificationSink
from sinks.redis_counts import RedisCountSink
from sinks.redis_hot import RedisHotSink
from sinks.redis_recent import RedisRecentSink
from sinks.redis_trending import RedisTrendingSink
from tests.conftest import fresh_id
from tests.sinks import kafka_topics

T0 = 1_795_000_000_000  # 2026-11-18 11:06:40 UTC
T0_UTC = datetime(2026, 11, 18, 11, 6, 40)  # ClickHouse returns naive UTC
T0_RFC = "2026-11-18T11:06:40.000000Z"


@dataclass
class Case:
    """``read()`` must return exactly ``expected`` after ``batch``, after a replay of it,
    and after ``stale`` (older versions of the same keys)."""

    sink: DynamicSink[Any]
    batch: list[Any]
    expected: Any
    read: Callable[[], Any]
    stale: list[Any] = field(default_factory=list)
    cleanup: Callable[[], object] = lambda: None


Builder = Callable[[CommonSettings, str], Case]


def _pg(url: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def redis_counts(s: CommonSettings, chdb_url: str) -> Case:
    p, r = fresh_id(), redis.Redis.from_url(s.redis_url)
    keys = [count_key(p), count_key(p + 1), count_seq_key(p), count_seq_key(p + 1)]
    return Case(
        RedisCountSink(s.redis_url),
        [CountUpdate(p, 1, 1), CountUpdate(p + 1, 5, 9), CountUpdate(p, 2, 2)],
        [b"2", b"5", b"2", b"9"],  # counts, then their seqs: the highest seq per post
        lambda: r.mget(keys),
        stale=[CountUpdate(p, 1, 1), CountUpdate(p + 1, 4, 8)],
        cleanup=lambda: r.delete(*keys),
    )


def postgres_counts(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    sql = "SELECT post_id, like_count, seq FROM post_like_counts WHERE post_id IN (%s, %s)"
    return Case(
        PostgresCountSink(s.postgres_url),
        [CountUpdate(p, 1, 1), CountUpdate(p + 1, 5, 9), CountUpdate(p, 2, 2)],
        [(p, 2, 2), (p + 1, 5, 9)],
        lambda: _pg(s.postgres_url, sql + " ORDER BY 1", (p, p + 1)),
        stale=[CountUpdate(p, 1, 1), CountUpdate(p + 1, 4, 8)],
        cleanup=lambda: _pg(
            s.postgres_url, "DELETE FROM post_like_counts WHERE post_id IN (%s, %s)", (p, p + 1)
        ),
    )


def postgres_notifications(s: CommonSettings, chdb_url: str) -> Case:
    author, post = fresh_id(), fresh_id()
    batch = [
        NotificationUpdate(author, post, ((11, T0), (12, T0 + 5)), True),
        NotificationUpdate(author, post, ((11, T0 + 9),), True),  # a re-like: not a new actor
        NotificationUpdate(author, post, ((author, T0 + 7),), True),  # a self-like: never
    ]
    sql = "SELECT post_id, actor_ids, total_actors, updated_at, updates FROM notifications"

    def cleanup() -> None:
        _pg(s.postgres_url, "DELETE FROM notifications WHERE recipient_id = %s", (author,))
        _pg(s.postgres_url, "DELETE FROM notification_actors WHERE recipient_id = %s", (author,))

    return Case(
        PostgresNotificationSink(s.postgres_url),
        batch,
        # two distinct actors, newest first, in one row update
        [(post, [12, 11], 2, datetime(2026, 11, 18, 11, 6, 40, 5000, tzinfo=UTC), 1)],
        lambda: _pg(s.postgres_url, sql + " WHERE recipient_id = %s", (author,)),
        stale=batch[:1],
        cleanup=cleanup,
    )


def redis_hot(s: CommonSettings, chdb_url: str) -> Case:
    p, r = fresh_id(), redis.Redis.from_url(s.redis_url)
    return Case(
        RedisHotSink(s.redis_url),
        [
            HotChange(p, "hot", 150, 150, T0, T0, None),
            HotChange(p, "update", 170, 170, T0, T0 + 1, None),
            HotChange(p + 1, "hot", 130, 130, T0, T0, None),
            HotChange(p + 1, "cooled", 20, 130, T0, T0 + 5, T0 + 5),
        ],
        (170.0, None),  # the latest rate; a cooled post is gone
        lambda: (r.zscore(HOT_KEY, str(p)), r.zscore(HOT_KEY, str(p + 1))),
        cleanup=lambda: r.zrem(HOT_KEY, str(p), str(p + 1)),
    )


def redis_trending(s: CommonSettings, chdb_url: str) -> Case:
    p, r = fresh_id(), redis.Redis.from_url(s.redis_url)
    return Case(
        RedisTrendingSink(s.redis_url),
        [(p, 3.5), (p + 1, 2.0), (p, 4.25), (p + 1, None)],
        (4.25, None),  # the last score; a forgotten post is gone
        lambda: (r.zscore(TRENDING_KEY, str(p)), r.zscore(TRENDING_KEY, str(p + 1))),
        cleanup=lambda: r.zrem(TRENDING_KEY, str(p), str(p + 1)),
    )


def redis_recent(s: CommonSettings, chdb_url: str) -> Case:
    p, r = fresh_id(), redis.Redis.from_url(s.redis_url)
    lists = [recent_key(p + i) for i in range(3)]
    seqs = [recent_seq_key(p + i) for i in range(3)]

    def read() -> Any:
        return [r.lrange(k, 0, -1) for k in lists], r.mget(seqs)

    return Case(
        RedisRecentSink(s.redis_url, s.postgres_url),
        [
            RecentLikers(p, (3, 2, 1), 3, True),
            RecentLikers(p + 1, (9,), 5, True),
            RecentLikers(p, (4, 3, 2, 1), 4, True),
            RecentLikers(p + 2, (7,), 1, True),
            RecentLikers(p + 2, (), 2, True),  # its last liker left: no list
        ],
        ([[b"4", b"3", b"2", b"1"], [b"9"], []], [b"4", b"5", b"2"]),
        read,
        stale=[RecentLikers(p, (1,), 2, True), RecentLikers(p + 1, (), 4, True)],
        cleanup=lambda: r.delete(*lists, *seqs),
    )


def _ch(url: str, sql: str) -> Callable[[], list[tuple[Any, ...]]]:
    return lambda: [tuple(r) for r in clickhouse_store.get_client(url).query(sql).result_rows]


def clickhouse_windows(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    return Case(
        ClickHouseSink(chdb_url, "post_like_window_parts", window_row),
        [
            WindowPart(p, T0, T0 + 60_000, "p0", 3, 1, 4),
            WindowPart(p, T0, T0 + 60_000, "p1", 2, 0, 2),
            WindowPart(p, T0, T0 + 60_000, "late:x", 1, 0, 1),
        ],
        [(p, T0_UTC, datetime(2026, 11, 18, 11, 7, 40), 6, 1, 5)],  # parts summed
        _ch(chdb_url, f"SELECT * FROM likes.post_like_windows WHERE post_id = {p}"),
        stale=[WindowPart(p, T0, T0 + 60_000, "p0", 1, 1, 2)],
    )


def clickhouse_like_events(s: CommonSettings, chdb_url: str) -> Case:
    p, e1, e2 = fresh_id(), UUID(int=fresh_id()), UUID(int=fresh_id())
    batch = [
        Accepted(p, 7, 1, 1, 1, T0, e1, "LikeCreated", None),
        Accepted(p, 7, 2, -1, 1, T0 + 9, e2, "LikeRemoved", None),
    ]
    sql = f"SELECT * FROM likes.like_events WHERE post_id = {p} ORDER BY occurred_at"
    return Case(
        ClickHouseSink(chdb_url, "like_events_raw", event_row),
        batch,
        [
            (e1, "LikeCreated", p, 7, 1, T0_UTC, 1),
            (e2, "LikeRemoved", p, 7, 2, datetime(2026, 11, 18, 11, 6, 40, 9000), -1),
        ],
        _ch(chdb_url, sql),
        stale=batch[:1],
    )


def clickhouse_hot_posts(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    batch = [
        HotChange(p, "hot", 150, 150, T0, T0, None),
        HotChange(p, "update", 180, 180, T0, T0 + 4, None),
        HotChange(p, "cooled", 20, 180, T0, T0 + 9, T0 + 9),
    ]
    return Case(
        ClickHouseSink(chdb_url, "hot_post_episodes", hot_row),
        batch,
        [(p, T0_UTC, datetime(2026, 11, 18, 11, 6, 40, 9000), 180)],  # one episode, cooled
        _ch(chdb_url, f"SELECT * FROM likes.hot_posts WHERE post_id = {p}"),
        stale=batch[:2],
    )


def _kafka_case(s: CommonSettings, batch: list[Any], expected: list[Any], **kw: Any) -> Case:
    """Reads what a consumer keeps after dropping copies by ``event_id``; the raw topic
    gains identical copies on replay (at-least-once), which ``consumer_view`` checks."""
    topic = kafka_topics.create_topic(s.kafka_bootstrap)
    return Case(
        KafkaTopicSink(s.kafka_bootstrap, topic, **kw),
        batch,
        expected,
        lambda: kafka_topics.consumer_view(kafka_topics.read_all(s.kafka_bootstrap, topic)),
        cleanup=lambda: kafka_topics.delete_topic(s.kafka_bootstrap, topic),
    )


def kafka_dlq(s: CommonSettings, chdb_url: str) -> Case:
    bad = b'{"post_id": "x"}'
    batch = [
        DeadLetter(b"k1", bad, "likes.events", 2, 41, "invalid event: post_id: not an int"),
        DeadLetter(None, None, "likes.events", 0, 7, "empty message value"),
    ]
    expected = [
        (
            b"k1",
            bad,
            [
                ("error", b"invalid event: post_id: not an int"),
                ("src_topic", b"likes.events"),
                ("src_partition", b"2"),
                ("src_offset", b"41"),
                ("event_id", b"dlq:likes.events:2:41"),
            ],
        ),
        (
            None,
            b"",
            [
                ("error", b"empty message value"),
                ("src_topic", b"likes.events"),
                ("src_partition", b"0"),
                ("src_offset", b"7"),
                ("event_id", b"dlq:likes.events:0:7"),
            ],
        ),
    ]
    return _kafka_case(s, batch, expected, name="kafka_dlq", to_record=dead_letter_record)


def _hot_to_kafka(h: HotChange) -> KafkaRecord | None:
    """As ``flows.production_sinks.counts_sinks`` maps it, with a 60 s window."""
    return hot_record(h, 60) if h.state in ("hot", "cooled") else None


def kafka_hot_posts(s: CommonSettings, chdb_url: str) -> Case:
    p = fresh_id()
    batch = [
        HotChange(p, "hot", 150, 150, T0, T0, None),
        HotChange(p, "update", 170, 170, T0, T0 + 1, None),  # not published
        HotChange(p, "cooled", 20, 170, T0, T0 + 9, T0 + 9),
    ]
    hot = (
        f'{{"post_id": {p}, "state": "hot", "rate": 150, "window_seconds": 60, '
        f'"became_hot_at": "{T0_RFC}", "at": "{T0_RFC}", "peak_rate": 150}}'
    )
    cooled = (
        f'{{"post_id": {p}, "state": "cooled", "rate": 20, "window_seconds": 60, '
        f'"became_hot_at": "{T0_RFC}", "at": "2026-11-18T11:06:40.009000Z", "peak_rate": 170}}'
    )
    expected = [
        (str(p).encode(), hot.encode(), [("event_id", f"hot:{p}:{T0_RFC}:hot".encode())]),
        (str(p).encode(), cooled.encode(), [("event_id", f"hot:{p}:{T0_RFC}:cooled".encode())]),
    ]
    return _kafka_case(s, batch, expected, name="kafka_hot_posts", to_record=_hot_to_kafka)


CASES: list[Builder] = [
    redis_counts,
    redis_hot,
    redis_trending,
    redis_recent,
    postgres_counts,
    postgres_notifications,
    clickhouse_like_events,
    clickhouse_windows,
    clickhouse_hot_posts,
    kafka_dlq,
    kafka_hot_posts,
]
