"""``likes cdc recover`` republishes however many outbox rows the gap holds: more rows
than the producer's queue takes at once are waited for, not refused (a clean-clone run
failed with ``BufferError: Local: Queue full`` at 100,000 queued messages while Kafka
was slow; here the queue holds 20)."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from core.settings import CommonSettings
from ops.cdc_recover import republish
from tests.e2e.pipeline import drive, new_posts
from tests.sinks.kafka_topics import create_topic, delete_topic, read_all

pytestmark = pytest.mark.e2e
WINDOW_SQL = """SELECT count(*) FROM like_outbox
WHERE created_at >= %s AND created_at < %s AND action <> 'FlowState'"""


def _now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def test_republish_waits_for_a_full_producer_queue(stack: CommonSettings) -> None:
    posts = new_posts(stack, 10)
    topic = create_topic(stack.kafka_bootstrap)
    try:
        with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
            since = _now(conn)
            drive(stack, posts, 400, viral_share=0.3, unlike_share=0.3)
            until = _now(conn)
            [(rows,)] = conn.execute(WINDOW_SQL, (since, until)).fetchall()
            scratch = stack.model_copy(update={"events_topic": topic})
            sent, oldest = republish(scratch, conn, until, since, queue_max_messages=20)
        assert rows > 300, "the window holds the workload's transitions"
        assert sent == rows and oldest is not None
        records = read_all(stack.kafka_bootstrap, topic)
        assert len(records) == sent
        assert len({dict(h)["event_id"] for _, _, h in records}) == sent, "each row once"
    finally:
        delete_topic(stack.kafka_bootstrap, topic)
