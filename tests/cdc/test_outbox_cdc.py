"""Debezium publishes every committed outbox row to ``likes.events`` (contract section 5)."""

from __future__ import annotations

import json

import httpx
import pytest

from core.settings import CommonSettings
from tests.conftest import auth, fresh_id, register_post
from tests.kafka_watch import TopicWatcher

pytestmark = pytest.mark.integration


def _for_edge(msgs: list[object], post: int, user: int) -> list[object]:
    key = f"{post}:{user}".encode()
    return [m for m in msgs if m.key() == key]  # type: ignore[attr-defined]


def test_like_repeat_unlike_give_exactly_the_changes(
    api: httpx.Client, stack: CommonSettings
) -> None:
    post, user = register_post(api, stack, author=77), fresh_id()
    watch = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    h = auth(stack, user)
    api.post(f"/v1/posts/{post}/like", headers=h)
    api.post(f"/v1/posts/{post}/like", headers=h)  # no change: no event
    api.delete(f"/v1/posts/{post}/like", headers={**h, "Idempotency-Key": "cdc-1"})
    msgs = watch.wait_until(lambda m: len(_for_edge(m, post, user)) >= 2)
    watch.poll_for(3)  # anything extra would show up now
    mine = _for_edge(watch.messages, post, user)
    values = [json.loads(m.value()) for m in mine]  # type: ignore[attr-defined]
    assert [(v["action"], v["edge_version"]) for v in values] == [
        ("LikeCreated", 1),
        ("LikeRemoved", 2),
    ]
    assert values[1]["idempotency_key"] == "cdc-1" and values[0]["idempotency_key"] is None
    for m, v in zip(mine, values, strict=True):
        assert set(v) >= {
            "event_id",
            "action",
            "post_id",
            "user_id",
            "edge_version",
            "occurred_at",
            "idempotency_key",
        }
        assert (v["post_id"], v["user_id"], v["author_id"]) == (post, user, 77)
        assert v["occurred_at"].endswith("Z")
        headers = dict(m.headers() or [])  # type: ignore[attr-defined]
        assert headers["event_id"].decode() == v["event_id"]
    assert len({m.partition() for m in mine}) == 1  # type: ignore[attr-defined]
    assert msgs
    watch.close()


def test_one_posts_events_spread_over_partitions(api: httpx.Client, stack: CommonSettings) -> None:
    post = register_post(api, stack)
    watch = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    users = [fresh_id() for _ in range(60)]
    for u in users:
        api.post(f"/v1/posts/{post}/like", headers=auth(stack, u))
    prefix = f"{post}:".encode()
    watch.wait_until(lambda ms: sum(m.key().startswith(prefix) for m in ms) >= 60)
    parts = {m.partition() for m in watch.messages if m.key().startswith(prefix)}
    assert len(parts) >= 6, f"one post's events landed on only {parts}"
    watch.close()
