"""``likes backfill`` under live traffic: Redis counts, ``post_like_counts`` and
``likes:recent:*`` wiped in the middle of a workload are rebuilt from the edge store,
nothing is double-counted (every projection equals the edge store afterwards) and it
stays exact with the next 1,000 live likes; drift in the counts flow's own state is
adopted away, so it does not come back with the next like; asking for what it cannot
rebuild is a clear error."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import redis
from confluent_kafka import Producer

from core.kafka_partition import partition_for
from core.settings import CommonSettings
from ops.backfill import REBUILT
from ops.drift import edge_truth, measure
from schemas.events import rfc3339
from schemas.redis_keys import count_key, count_seq_key
from tests.conftest import auth, fresh_id
from tests.e2e.pipeline import converge, drive, new_posts
from tests.e2e.read_models import edge_store_recent, redis_recent
from tests.kafka_watch import TopicWatcher
from tests.ops.backfill_runs import LIKES, backfill_report, run_backfill, wipe_projections
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_backfill_rebuilds_wiped_projections_under_live_traffic(stack: CommonSettings) -> None:
    since = datetime.now(UTC)
    posts = new_posts(stack, 120)
    runs: list[subprocess.CompletedProcess[str]] = []

    def operator() -> None:
        time.sleep(8)
        wipe_projections(stack, posts)
        runs.append(run_backfill(since))

    t = threading.Thread(target=operator)
    t.start()
    result = drive(stack, posts, 8_000, processes=2, viral_share=0.3, concurrency=24)
    t.join()
    assert result.acked > 4_000
    report = backfill_report(runs[0])
    assert report["projections"] == list(REBUILT) and report["posts"] >= 100
    quiet = posts[60:]  # posts the workload may not touch after the wipe still came back
    assert converge(stack, posts, timeout=180).clean
    r = redis.Redis.from_url(stack.redis_url)
    assert all(r.get(count_key(p)) is not None for p in quiet if r.get(count_seq_key(p)))
    truth = edge_store_recent(stack, posts)
    wait_for("recent likers", lambda: redis_recent(stack, posts), lambda got: got == truth, 120)
    drive(stack, posts, 1_000, viral_share=0.3, concurrency=16)
    assert converge(stack, posts, timeout=180).clean


def test_backfill_refuses_what_it_cannot_rebuild(stack: CommonSettings) -> None:
    done = subprocess.run(
        [LIKES, "backfill", "--projection", "bogus"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "unknown projection" in done.stderr, done.stderr


def _forged_unlike(s: CommonSettings, post: int, user: int) -> None:
    """An unlike of the edge at version 2 that the edge store never committed (it holds
    version 1, liked), placed where Connect places the edge's events (the Java client's
    murmur2 partitioner): the counts flow applies it (count -1, ``seq`` +1), a damage of
    its own state as a duplicate after the dedupe TTL is, which no fenced write undoes."""
    value = {
        "event_id": str(uuid.uuid4()),
        "action": "LikeRemoved",
        "post_id": post,
        "user_id": user,
        "edge_version": 2,
        "occurred_at": rfc3339(datetime.now(UTC)),
        "idempotency_key": None,
    }
    p = Producer(
        {"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "partitioner": "murmur2_random"}
    )
    p.produce(s.events_topic, key=f"{post}:{user}".encode(), value=json.dumps(value).encode())
    assert p.flush(10) == 0


def test_the_counts_flow_adopts_the_backfill_so_drift_does_not_come_back(
    stack: CommonSettings,
) -> None:
    since = datetime.now(UTC)
    posts = new_posts(stack, 4)
    watch = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    drive(stack, posts, 400, viral_share=0.5, concurrency=8)
    assert converge(stack, posts, timeout=120).clean
    # Connect places each edge's events where Kafka's Java partitioner does: the
    # backfill's records rely on computing the same partition
    seen = watch.poll_for(5)
    parts = len(watch._c.list_topics(stack.events_topic).topics[stack.events_topic].partitions)
    assert len(seen) >= 300
    assert all(partition_for(m.key(), parts) == m.partition() for m in seen)

    victim, user = posts[0], fresh_id()
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        liked = api.post(f"/v1/posts/{victim}/like", headers=auth(stack, user))
    assert liked.status_code in (200, 201), liked.text
    assert converge(stack, posts, timeout=60).clean
    _forged_unlike(stack, victim, user)
    truth = edge_truth(stack, [victim])[victim]

    # the damage is applied everywhere before the rebuild: a forged event still in
    # flight when the backfill judges ClickHouse (the analytics flow holds its rows up
    # to a second) would be new damage after the rebuild, which no backfill covers
    def drifted() -> dict[str, list[tuple[int, int, int]]]:
        return measure(stack, [victim]).drift

    wait_for(
        "the drift in every projection",
        drifted,
        lambda d: all(rows == [(victim, truth - 1, truth)] for rows in d.values()),
        60,
    )
    assert backfill_report(run_backfill(since))["written"]["flow_state"] >= 1
    # the counts flow reaches its records and writes the truth over its own inflated seq;
    # ClickHouse got correction rows, the recent likers list was rebuilt
    report = converge(stack, posts, timeout=120)
    assert report.clean, report
    # and the drift stays gone with the next likes of the same post
    drive(stack, posts, 300, viral_share=0.8, concurrency=8)  # posts[0] is the viral one
    report = converge(stack, posts, timeout=120)
    assert report.clean, report
