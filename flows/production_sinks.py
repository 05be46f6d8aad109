"""The real sinks of each flow, built from settings (no I/O until a flow runs)."""

from __future__ import annotations

from core.records import HotChange
from core.settings import FlowSettings
from flows.counts import CountsSinks
from flows.decode import dead_letter_record, hot_record
from flows.fanout import FanoutSinks
from sinks.clickhouse_sinks import ClickHouseSink, event_row, hot_row, window_row
from sinks.kafka_topic import KafkaRecord, KafkaTopicSink
from sinks.postgres_counts import PostgresCountSink
from sinks.postgres_notifications import PostgresNotificationSink
from sinks.redis_counts import RedisCountSink
from sinks.redis_hot import RedisHotSink
from sinks.redis_trending import RedisTrendingSink


def counts_sinks(s: FlowSettings) -> CountsSinks:
    """Redis and Postgres counts, ClickHouse analytics, hot posts, the DLQ."""
    ch = s.effective_clickhouse_url

    def hot_to_kafka(h: HotChange) -> KafkaRecord | None:
        return hot_record(h, s.hot_window_s) if h.state in ("hot", "cooled") else None

    return CountsSinks(
        dead_letters=KafkaTopicSink(
            s.kafka_bootstrap, s.dlq_topic, name="kafka_dlq", to_record=dead_letter_record
        ),
        like_events=ClickHouseSink(ch, "like_events_raw", event_row),
        windows=ClickHouseSink(ch, "post_like_window_parts", window_row),
        counts=[RedisCountSink(s.redis_url), PostgresCountSink(s.postgres_url)],
        hot=[
            RedisHotSink(s.redis_url),
            KafkaTopicSink(
                s.kafka_bootstrap, s.hot_topic, name="kafka_hot_posts", to_record=hot_to_kafka
            ),
            ClickHouseSink(ch, "hot_post_episodes", hot_row),
        ],
    )


def fanout_sinks(s: FlowSettings) -> FanoutSinks:
    """Notifications in Postgres, trending scores in Redis, the DLQ."""
    return FanoutSinks(
        dead_letters=KafkaTopicSink(
            s.kafka_bootstrap, s.dlq_topic, name="kafka_dlq", to_record=dead_letter_record
        ),
        notifications=PostgresNotificationSink(s.postgres_url),
        trending=RedisTrendingSink(s.redis_url),
    )
