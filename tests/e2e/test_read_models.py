"""End to end: the fanout flow's read models against the edge store.

- ``likes:recent:{post}`` equals each post's 20 newest current likers in ``post_likes``
  (``updated_at``, then ``version``, then ``user_id``, descending) after a workload with
  unlikes, client retries and redelivered Kafka messages;
- liking one's own post notifies nobody; a muted post's notification does not change,
  and after the mute is lifted its next update counts everyone;
- a like storm on one post gives an exact aggregate in few row updates
  (``notifications.updates``), never more than one per ``LIKES_NOTIFY_MIN_INTERVAL_S``
  plus the first and the last.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka import Producer

from core.settings import CommonSettings, FlowSettings
from tests.conftest import auth, fresh_id
from tests.e2e.pipeline import converge, drive, new_posts
from tests.e2e.read_models import (
    NOTE_SQL,
    edge_store_recent,
    like_all,
    redis_recent,
    register,
    rows,
)
from tests.kafka_watch import TopicWatcher
from tests.waiting import fanout_caught_up, wait_for

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def test_recent_likers_equal_the_edge_store(stack: CommonSettings) -> None:
    posts = new_posts(stack, 40)
    watch = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    result = drive(
        stack, posts, 8000, users=250, viral_share=0.3, unlike_share=0.3, retry_share=0.05
    )
    assert not result.errors, result.errors
    assert result.replayed > 0, "client retries with the same key were replayed"
    assert converge(stack, posts).clean
    truth = edge_store_recent(stack, posts)
    assert max(len(users) for users in truth.values()) == 20, "some posts have 20+ likers"
    wait_for("recent likers", lambda: redis_recent(stack, posts), lambda got: got == truth, 120)

    # redelivered and stale copies of this run's events change nothing
    mine = [m for m in watch.poll_for(1) if int(m.key().split(b":")[0]) in set(posts)]
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for m in mine[::2]:
        producer.produce(
            stack.events_topic,
            key=m.key(),
            value=m.value(),
            headers=m.headers(),
            partition=m.partition(),
        )
    producer.flush(30)
    watch.close()
    fanout_caught_up(stack)
    assert redis_recent(stack, posts) == truth


def test_self_likes_and_muted_posts_do_not_notify(stack: CommonSettings) -> None:
    author, fan = fresh_id(), fresh_id()
    own, muted = register(stack, author), register(stack, author)
    api = httpx.Client(base_url=stack.api_url, timeout=30)
    r = api.put(f"/v1/posts/{muted}/mute", headers=auth(stack, author))
    assert r.status_code == 200 and r.json()["muted"] is True, r.text
    assert api.put(f"/v1/posts/{muted}/mute", headers=auth(stack, fan)).status_code == 403
    assert api.put(f"/v1/posts/{fresh_id()}/mute", headers=auth(stack, author)).status_code == 404
    again = api.put(f"/v1/posts/{muted}/mute", headers=auth(stack, author))
    assert again.json() == r.json(), "muting again changes nothing"

    like_all(stack, own, [author, fan])
    like_all(stack, muted, [fan, fresh_id()])
    wait_for(
        "the likes in the ledger",
        lambda: rows(
            stack,
            "SELECT count(*) FROM notification_actors WHERE recipient_id = %s",
            (author,),
        )[0][0],
        lambda n: n == 3,
        120,
    )
    fanout_caught_up(stack)
    assert rows(stack, NOTE_SQL, (author, own)) == [(1, 1, [fan], 1)], "the author is not an actor"
    assert rows(stack, NOTE_SQL, (author, muted)) == [], "a muted post has no notification"
    assert redis_recent(stack, [own]) == {own: edge_store_recent(stack, [own])[own]}
    assert set(redis_recent(stack, [own])[own]) == {author, fan}, "the author is a liker"

    # a fold the rate limit still held back would come while muted, and change nothing
    time.sleep(FlowSettings().notify_min_interval_s + 1)
    assert rows(stack, NOTE_SQL, (author, muted)) == []
    r = api.delete(f"/v1/posts/{muted}/mute", headers=auth(stack, author))
    assert r.status_code == 200 and r.json() == {"post_id": muted, "muted": False, "muted_at": None}
    late = fresh_id()
    like_all(stack, muted, [late])
    note = wait_for(
        "the muted post's first update",
        lambda: rows(stack, NOTE_SQL, (author, muted)),
        lambda rows: bool(rows),
        120,
    )
    assert note[0][:2] == (3, 1) and note[0][2][0] == late, "the held likes are counted now"
    api.close()


def test_a_like_storm_is_exact_in_few_updates(stack: CommonSettings) -> None:
    interval = FlowSettings().notify_min_interval_s
    author = fresh_id()
    post = register(stack, author)
    users = [fresh_id() for _ in range(400)]
    seen: list[tuple[Any, ...]] = []
    took = like_all(stack, post, users[:200])
    seen.extend(rows(stack, NOTE_SQL, (author, post)))
    took += like_all(stack, post, users[200:])
    final = wait_for(
        "an exact aggregate",
        lambda: rows(stack, NOTE_SQL, (author, post)),
        lambda rows: bool(rows) and rows[0][0] == len(users),
        120,
    )
    seen.extend(final)
    total, updates, actor_ids, folded = final[0]
    assert total == folded == len(users), "every actor counted once"
    assert len(actor_ids) == 10 and set(actor_ids) <= set(users)
    assert all(row[0] == row[3] for row in seen), "the aggregate is exact whenever it changes"
    # folds follow the flow's reading of the storm, which lags the API by CDC latency
    bound = (took + 10) / interval + 2
    assert 1 <= updates <= bound, (updates, took, interval)
    assert updates < len(users) / 20, "the rate limit, not one update per like"
