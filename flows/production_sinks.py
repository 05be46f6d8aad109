"""The real sinks of each flow, built from settings (no I/O until a flow runs)."""

from __future__ import annotations

from core.records import HotChange
from core.settings import FlowSettings
from core.topology import is_cluster
from flows.analytics import AnalyticsSinks
from flows.counts import CountsSinks
from flows.decode import dead_letter_record, hot_record
from flows.fanout import FanoutSinks
from flows.hot_episodes import episode_record
from sinks import clickhouse_store
from sinks.clickhouse_erasure import anonymizing
from sinks.clickhouse_sinks import ClickHouseSink, event_row, hot_row, window_row
from sinks.faults import fault_file
from sinks.kafka_topic import KafkaRecord, KafkaTopicSink
from sinks.owner import OwnerOnlySink, ProcessLocalSink
from sinks.postgres_counts import PostgresCountSink
from sinks.postgres_notifications import PostgresNotificationSink
from sinks.redis_counts import RedisCountSink
from sinks.redis_hot import RedisHotSink
from sinks.redis_recent import RedisRecentSink
from sinks.redis_trending import RedisTrendingSink


def counts_sinks(s: FlowSettings, process_id: int = 0) -> CountsSinks:
    """Redis and Postgres counts, hot posts (Redis, ``likes.hot_posts``, and every
    episode change to ``likes.hot_episodes`` for the analytics flow), the DLQ: nothing
    in ClickHouse, so a slow analytics store cannot delay a count. Each process writes
    its own items gathered (:class:`sinks.owner.ProcessLocalSink`), off its main loop:
    Redis counts (what feeds read) over ``redis_flush_s``, ``post_like_counts`` in
    transactions over ``postgres_flush_s``, the hot-post topics over
    ``topic_flush_s``."""

    def hot_to_kafka(h: HotChange) -> KafkaRecord | None:
        return hot_record(h, s.hot_window_s) if h.state in ("hot", "cooled") else None

    return CountsSinks(
        dead_letters=KafkaTopicSink(
            s.kafka_bootstrap, s.dlq_topic, name="kafka_dlq", to_record=dead_letter_record
        ),
        like_events=None,
        windows=None,
        counts=[
            ProcessLocalSink(
                RedisCountSink(s.redis_url), process_id=process_id, flush_s=s.redis_flush_s
            ),
            ProcessLocalSink(
                PostgresCountSink(s.postgres_url),
                process_id=process_id,
                flush_s=s.postgres_flush_s,
            ),
        ],
        hot=[
            RedisHotSink(s.redis_url),
            ProcessLocalSink(
                KafkaTopicSink(
                    s.kafka_bootstrap, s.hot_topic, name="kafka_hot_posts", to_record=hot_to_kafka
                ),
                process_id=process_id,
                flush_s=s.topic_flush_s,
            ),
            ProcessLocalSink(
                KafkaTopicSink(
                    s.kafka_bootstrap,
                    s.hot_episodes_topic,
                    name="kafka_hot_episodes",
                    to_record=episode_record,
                ),
                process_id=process_id,
                flush_s=s.topic_flush_s,
            ),
        ],
    )


def analytics_sinks(s: FlowSettings, *, owns_store: bool = True) -> AnalyticsSinks:
    """ClickHouse like events (an erased user's with ``user_id`` 0), window parts and
    hot-post episodes (each reading the fault-injection test hook
    ``<home>/faults/clickhouse.json``), the DLQ. With embedded chDB in a flow of several
    processes, only the one that ``owns_store`` writes ClickHouse (the others' rows
    cross to it: :class:`sinks.owner.OwnerOnlySink`); every table is written at most
    ``clickhouse_flush_s`` after its rows arrive, one insert per interval."""
    ch = s.effective_clickhouse_url
    faults = fault_file(s.home, "clickhouse")
    events = ClickHouseSink(ch, "like_events_raw", anonymizing(ch, event_row), fault_file=faults)
    parts = ClickHouseSink(ch, "post_like_window_parts", window_row, fault_file=faults)
    episodes = ClickHouseSink(ch, "hot_post_episodes", hot_row, fault_file=faults)
    # Every process lists the store's one partition unless only one may open it.
    owns = owns_store or not (clickhouse_store.is_embedded(ch) and is_cluster(s))
    flush_s = s.clickhouse_flush_s
    like_events = OwnerOnlySink(events, owns=owns, flush_s=flush_s)
    windows = OwnerOnlySink(parts, owns=owns, flush_s=flush_s)
    hot_episodes = OwnerOnlySink(episodes, owns=owns, flush_s=flush_s)
    return AnalyticsSinks(
        dead_letters=KafkaTopicSink(
            s.kafka_bootstrap, s.dlq_topic, name="kafka_dlq", to_record=dead_letter_record
        ),
        like_events=like_events,
        windows=windows,
        hot_episodes=hot_episodes,
    )


def fanout_sinks(s: FlowSettings, process_id: int = 0) -> FanoutSinks:
    """Notifications in Postgres (in transactions gathered per process over
    ``postgres_flush_s``), trending scores and recent likers in Redis, the DLQ."""
    return FanoutSinks(
        dead_letters=KafkaTopicSink(
            s.kafka_bootstrap, s.dlq_topic, name="kafka_dlq", to_record=dead_letter_record
        ),
        notifications=ProcessLocalSink(
            PostgresNotificationSink(s.postgres_url),
            process_id=process_id,
            flush_s=s.postgres_flush_s,
        ),
        trending=RedisTrendingSink(s.redis_url),
        recent=RedisRecentSink(s.redis_url, s.postgres_url, s.recent_likers),
    )
