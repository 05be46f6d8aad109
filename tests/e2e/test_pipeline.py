"""End to end through the API, Debezium, Kafka, the flows and every projection."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from confluent_kafka import Producer

from core.settings import CommonSettings
from tests.conftest import auth, fresh_id
from tests.e2e.pipeline import assert_fanout_converges, converge, drive, new_posts
from tests.kafka_watch import TopicWatcher

pytestmark = pytest.mark.e2e


def test_mixed_workload_converges_exactly(stack: CommonSettings) -> None:
    posts = new_posts(stack, 520)
    watch = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    result = drive(stack, posts, 20_000, viral_share=0.32, unlike_share=0.2, retry_share=0.05)
    assert result.ops >= 20_000 and not result.errors, result.errors
    assert result.replayed > 0, "client retries with the same key were replayed"
    report = converge(stack, posts)
    assert report.clean, report.summary()
    assert_fanout_converges(stack, posts)
    # the viral post really dominated, and is in the hot set or hot history
    from ops.analytics import query

    _, rows = query(stack, f"SELECT count() FROM likes.like_events WHERE post_id = {posts[0]}")
    assert rows[0][0] >= 0.2 * len(watch.poll_for(1))

    # duplicates and stale copies re-published (as a redelivery would: same key, same
    # partition) change nothing
    mine = [m for m in watch.messages if int(m.key().split(b":")[0]) in set(posts)]
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for m in mine[: len(mine) // 2]:
        producer.produce(
            stack.events_topic,
            key=m.key(),
            value=m.value(),
            headers=m.headers(),
            partition=m.partition(),
        )
    producer.flush(30)
    watch.close()
    after = converge(stack, posts, timeout=30)
    assert after.clean, after.summary()


def test_poison_message_goes_to_dlq_and_flow_continues(stack: CommonSettings) -> None:
    dlq = TopicWatcher(stack.kafka_bootstrap, stack.dlq_topic)
    poison_key = f"poison-{uuid.uuid4()}".encode()
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(stack.events_topic, key=poison_key, value=b"\x00{not an event")
    producer.produce(
        stack.events_topic,
        key=poison_key,
        value=json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "action": "Bogus",
                "post_id": 1,
                "user_id": 1,
                "edge_version": 1,
                "occurred_at": "2026-01-01T00:00:00Z",
            }
        ).encode(),
    )
    producer.flush(30)
    msgs = dlq.wait_until(lambda ms: sum(m.key() == poison_key for m in ms) >= 2)
    dead = [m for m in msgs if m.key() == poison_key]
    assert dead[0].value() == b"\x00{not an event"
    headers = dict(dead[1].headers())
    assert b"action" in headers["error"]
    assert headers["src_topic"] == stack.events_topic.encode()
    assert int(headers["src_offset"]) >= 0
    dlq.close()
    # and the flow keeps going
    posts = new_posts(stack, 1)
    user = fresh_id()
    httpx.post(f"{stack.api_url}/v1/posts/{posts[0]}/like", headers=auth(stack, user))
    assert converge(stack, posts, timeout=60).clean
