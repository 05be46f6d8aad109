"""``kill -9`` of Kafka Connect: every committed outbox row still reaches Kafka."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import psycopg
import pytest

from core.settings import CommonSettings
from loadgen.workload import Workload, run_workload
from tests.e2e.pipeline import new_posts
from tests.faults.kill import kill_and_wait
from tests.kafka_watch import TopicWatcher

pytestmark = pytest.mark.integration


def test_kill_connect_loses_no_committed_row(stack: CommonSettings) -> None:
    posts = new_posts(stack, 30)
    watch = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    done = threading.Event()

    def killer() -> None:
        time.sleep(2)
        kill_and_wait(stack, "connect")  # rows keep committing while Connect is down
        done.set()

    t = threading.Thread(target=killer)
    t.start()
    w = Workload(posts=posts, operations=6000, users=3000, concurrency=16)
    asyncio.run(run_workload(stack.api_url, stack.jwt_secret.get_secret_value(), w))
    t.join()
    assert done.is_set()
    with psycopg.connect(stack.postgres_url) as conn:
        committed = {
            str(r[0])
            for r in conn.execute(
                "SELECT event_id FROM like_outbox WHERE post_id = ANY(%s)", (posts,)
            )
        }
    assert len(committed) > 1000

    def published() -> set[str]:
        return {json.loads(m.value())["event_id"] for m in watch.messages}

    watch.wait_until(lambda _: committed <= published(), timeout=120)
    assert committed <= published()
    watch.close()
