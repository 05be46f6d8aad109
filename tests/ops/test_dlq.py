"""``likes dlq list`` shows what the flows dead-lettered; ``likes dlq replay`` re-injects
it once, and a second replay changes nothing (contract sections 2, 5 and 8)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from core.kafka_partition import partition_for
from core.records import DeadLetter
from core.settings import CommonSettings
from flows.decode import dead_letter_record
from ops import backfill_runs
from ops.backfill import REBUILT
from ops.backfill_runs import BackfillRun
from ops.drift import edge_truth, measure, postgres_counts, redis_counts
from tests.conftest import auth, fresh_id, register_post
from tests.e2e.pipeline import converge
from tests.kafka_watch import TopicWatcher

pytestmark = pytest.mark.e2e
LIKES = str(Path(sys.executable).with_name("likes"))


def likes_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LIKES, *args], capture_output=True, text=True, timeout=180)


def dlq_list(limit: int = 0) -> list[dict[str, Any]]:
    out = likes_cli("dlq", "list", "--json", "--limit", str(limit))
    assert out.returncode == 0, out.stdout + out.stderr
    entries: list[dict[str, Any]] = json.loads(out.stdout)
    return entries


def dlq_replay(*args: str) -> tuple[int, dict[str, Any]]:
    out = likes_cli("dlq", "replay", "--json", *args)
    assert out.returncode in (0, 1, 2), out.stdout + out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return out.returncode, report


def produce(bootstrap: str, topic: str, key: bytes, value: bytes, **kw: Any) -> tuple[int, int]:
    """Produce one record, acknowledged by all in-sync replicas: its (partition, offset)."""
    done: list[tuple[int, int]] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        done.append((msg.partition(), msg.offset()))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    p.produce(topic, key=key, value=value, on_delivery=on_delivery, **kw)
    assert p.flush(30) == 0
    assert len(done) == 1
    return done[0]


def shown_bytes(shown: dict[str, Any]) -> bytes:
    if shown["encoding"] == "base64":
        return base64.b64decode(shown["data"])
    return str(shown["data"]).encode()


def end_offset(s: CommonSettings, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": f"t-{uuid.uuid4()}"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        c.close()


def wait_for(what: str, check: Any, timeout: float = 120, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def test_poison_messages_are_listed_with_reason_source_and_original_bytes(
    stack: CommonSettings,
) -> None:
    key = f"dlq-test-{uuid.uuid4()}".encode()
    garbage = b"\x00\xff not json \x1b[31m"
    bad_field = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "action": "LikeCreated",
            "post_id": -1,
            "user_id": 1,
            "edge_version": 1,
            "occurred_at": "2026-01-01T00:00:00Z",
        }
    ).encode()
    coords = {
        garbage: produce(stack.kafka_bootstrap, stack.events_topic, key, garbage),
        bad_field: produce(stack.kafka_bootstrap, stack.events_topic, key, bad_field),
    }

    def ours() -> list[dict[str, Any]]:
        found = [e for e in dlq_list() if e["key"] and shown_bytes(e["key"]) == key]
        return found if len(found) == 2 else []

    entries = wait_for("both poison messages in `likes dlq list`", ours, timeout=90, every=2)
    by_value = {shown_bytes(e["value"]): e for e in entries}
    assert set(by_value) == {garbage, bad_field}
    for value, (partition, offset) in coords.items():
        e = by_value[value]
        assert e["source"] == {
            "topic": stack.events_topic,
            "partition": partition,
            "offset": offset,
        }
        assert e["id"] in e["dlq_ids"] and e["copies"] >= 1
        assert e["time"].endswith("Z") and e["replayed"] is False
    assert by_value[garbage]["value"]["encoding"] == "base64"  # not printable: base64
    assert "Invalid JSON" in by_value[garbage]["reason"]
    assert by_value[bad_field]["value"] == {
        "encoding": "utf-8",
        "data": bad_field.decode(),
        "size": len(bad_field),
    }
    assert "post_id" in by_value[bad_field]["reason"]

    table = likes_cli("dlq", "list")
    assert table.returncode == 0, table.stderr
    assert by_value[garbage]["id"] in table.stdout
    assert "\x1b" not in table.stdout  # the ESC in the bytes never reaches the terminal

    # the cause is not fixed: the current schema still rejects both, so nothing is sent;
    # a finished full backfill since bad_field's claimed occurred_at does not make it
    # "covered": only an event the flows can apply is a transition a backfill can read
    backfill_runs.record(
        stack,
        BackfillRun(
            datetime.now(UTC) - timedelta(seconds=1), None, REBUILT, "done", datetime.now(UTC)
        ),
    )
    rc, report = dlq_replay("--id", by_value[garbage]["id"], "--id", by_value[bad_field]["id"])
    assert rc == 1, report
    assert [i["status"] for i in report["items"]] == ["still_invalid", "still_invalid"]
    rc, report = dlq_replay("--id", "999:999999999")
    assert (rc, report["unknown_ids"], report["items"]) == (2, ["999:999999999"], [])


@dataclass
class DeadLettered:
    """A valid like in the edge store that no projection has, its event dead-lettered."""

    author: int
    post: int
    users: tuple[int, int]
    key: bytes
    value: bytes
    event_id: str
    src_partition: int
    nparts: int
    dlq_id: str


def dead_lettered_like(
    api: httpx.Client, stack: CommonSettings, events: TopicWatcher
) -> DeadLettered:
    """The state a flow that wrongly dead-lettered a valid like leaves (see
    :func:`test_replayed_dead_letter_is_counted_exactly_once` for why it is honest)."""
    author = fresh_id()
    post = register_post(api, stack, author)
    user1, user2 = fresh_id(), fresh_id()
    nparts = len(
        Producer({"bootstrap.servers": stack.kafka_bootstrap})
        .list_topics(stack.events_topic, timeout=10)
        .topics[stack.events_topic]
        .partitions
    )

    # a real like, through the API and Debezium
    assert api.post(f"/v1/posts/{post}/like", headers=auth(stack, user1)).status_code == 200
    real = events.wait_until(
        lambda ms: any(m.key() == f"{post}:{user1}".encode() for m in ms), timeout=90
    )
    real_msg = next(m for m in real if m.key() == f"{post}:{user1}".encode())
    assert partition_for(real_msg.key(), nparts) == real_msg.partition()
    assert converge(stack, [post], timeout=90).clean

    # the dead-lettered like: in the edge store, never published
    event_id = str(uuid.uuid4())
    with psycopg.connect(stack.postgres_url) as conn:
        row = conn.execute(
            """
            WITH up AS (
                INSERT INTO post_likes (post_id, user_id, state, created_at, updated_at,
                                        version)
                VALUES (%(post)s, %(user)s, 'liked', now(), now(), 1)
                RETURNING version, updated_at)
            SELECT jsonb_build_object(
                'event_id', %(eid)s::text, 'action', 'LikeCreated'::text,
                'post_id', %(post)s::bigint, 'user_id', %(user)s::bigint,
                'edge_version', up.version,
                'occurred_at', to_char(up.updated_at AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'idempotency_key', NULL::text, 'author_id', p.author_id)::text
            FROM up, posts p WHERE p.post_id = %(post)s
            """,
            {"post": post, "user": user2, "eid": event_id},
        ).fetchone()
    assert row is not None
    value = str(row[0]).encode()
    assert set(json.loads(value)) == set(json.loads(real_msg.value()))
    key = f"{post}:{user2}".encode()
    src_partition = partition_for(key, nparts)
    src_offset = end_offset(stack, stack.events_topic, src_partition)
    drift = measure(stack, [post]).drift
    assert drift == {name: [(post, 1, 2)] for name in ("redis", "postgres", "clickhouse")}, (
        "the setup must leave the projections one like behind the edge store"
    )

    rec = dead_letter_record(
        DeadLetter(
            key,
            value,
            stack.events_topic,
            src_partition,
            src_offset,
            "invalid event: simulated bug of an older flow version",
        )
    )
    dlq_p, dlq_o = produce(stack.kafka_bootstrap, stack.dlq_topic, key, value, headers=rec.headers)
    dlq_id = f"{dlq_p}:{dlq_o}"
    entry = next(e for e in dlq_list() if dlq_id in e["dlq_ids"])
    assert entry["id"] == dlq_id and entry["event_id"] == event_id
    assert entry["source"]["partition"] == src_partition
    assert shown_bytes(entry["value"]) == value and entry["replayed"] is False

    return DeadLettered(
        author, post, (user1, user2), key, value, event_id, src_partition, nparts, dlq_id
    )


def same_partition_user(post: int, partition: int, nparts: int) -> int:
    """A new user whose edge with ``post`` lands in ``partition`` (a barrier there)."""
    return next(
        u
        for u in iter(fresh_id, None)
        if partition_for(f"{post}:{u}".encode(), nparts) == partition
    )


def test_replayed_dead_letter_is_counted_exactly_once(
    api: httpx.Client, stack: CommonSettings
) -> None:
    """A valid like that a flow once dead-lettered is counted exactly once by replays.

    Setup, and why it is honest: a flow (an older, buggy version) dead-lettered a valid
    like event, so the edge store has the like and no projection does. To get exactly
    that state without changing the flows, the edge ``(post, user2)`` is written to
    ``post_likes`` directly (version 1, liked) with no outbox row, so Debezium publishes
    nothing and no flow ever sees it; its event is built in the same statement, with the
    API's own payload expression, so its bytes are what Debezium would have published
    (the test checks the fields against a real event of the same post). That event goes
    to ``likes.events.dlq`` with the headers the flows write
    (:func:`flows.decode.dead_letter_record`) and the partition Debezium's partitioner
    gives its key (checked against the real event); only the source offset is synthetic.
    The drift this leaves is real (every projection 1, the edge store 2), and the
    replay must be what removes it: ``measure`` is clean and every count is 2 afterwards.

    Deleting projection keys of an already-counted like instead would not be honest:
    the flows' dedupe state still holds that edge's version, so a replay would be
    dropped, and ClickHouse windows cannot be un-applied.

    Then: the same id again and ``--all`` send nothing ("already replayed"); ``--force``
    sends a second copy, and a later real like on the same Kafka partition is the
    barrier after which every count must be 3, not 4.
    """
    events = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    try:
        d = dead_lettered_like(api, stack, events)
        author, post, (user1, user2) = d.author, d.post, d.users
        key, value, event_id, dlq_id = d.key, d.value, d.event_id, d.dlq_id
        src_partition, nparts = d.src_partition, d.nparts

        # replay: counted, exactly once
        rc, report = dlq_replay("--id", dlq_id)
        assert rc == 0, report
        [item] = report["items"]
        assert item["status"] == "replayed" and item["event_id"] == event_id
        assert item["target"].startswith(f"{stack.events_topic}/{src_partition}@")
        final = converge(stack, [post], timeout=120)
        assert final.clean, final.summary()
        assert redis_counts(stack, [post]) == postgres_counts(stack, [post]) == {post: 2}
        entry = next(e for e in dlq_list() if e["id"] == dlq_id)
        assert entry["replayed"] is True and entry["replay_target"] == item["target"]

        # a second replay, and --all, send nothing
        rc, report = dlq_replay("--id", dlq_id)
        assert rc == 0 and [i["status"] for i in report["items"]] == ["already_replayed"]
        rc, report = dlq_replay("--all")
        [mine] = [i for i in report["items"] if i["id"] == dlq_id]
        assert mine["status"] == "already_replayed"
        assert not [i for i in report["items"] if i["status"] == "failed"], report

        # --force sends a second copy: the flows' dedupe drops it
        rc, report = dlq_replay("--id", dlq_id, "--force")
        assert rc == 0 and report["items"][0]["status"] == "replayed", report
        user3 = same_partition_user(post, src_partition, nparts)
        assert api.post(f"/v1/posts/{post}/like", headers=auth(stack, user3)).status_code == 200
        # user3's event lands after the forced copy in the same partition: once it is
        # counted, the copy was processed before it
        final = converge(stack, [post], timeout=120)
        assert final.clean, final.summary()
        assert edge_truth(stack, [post]) == {post: 3}
        assert redis_counts(stack, [post]) == postgres_counts(stack, [post]) == {post: 3}

        def notified() -> Any:
            with psycopg.connect(stack.postgres_url) as conn:
                return conn.execute(
                    "SELECT actor_ids, total_actors FROM notifications"
                    " WHERE recipient_id = %s AND post_id = %s AND total_actors >= 3",
                    (author, post),
                ).fetchone()

        actors, total = wait_for("user3's notification", notified, timeout=60)
        assert total == 3 and sorted(actors) == sorted([user1, user2, user3])

        replays = [
            m
            for m in events.poll_for(1)
            if m.key() == key and dict(m.headers() or []).get("replayed_from")
        ]
        assert len(replays) == 2  # the first replay and the forced one, nothing else
        for m in replays:
            assert m.value() == value and m.partition() == src_partition
            headers = dict(m.headers() or [])
            assert headers["replayed_from"] == dlq_id.encode()
            assert headers["event_id"] == event_id.encode()
    finally:
        events.close()


def test_a_dead_letter_a_backfill_already_counted_is_not_replayed(
    api: httpx.Client, stack: CommonSettings
) -> None:
    """The dead-lettered like of the test above, but an operator ran ``likes backfill``
    after it was dead-lettered: the backfill read the like from the edge store (every
    projection is exact again, the counts flow adopted it), so replaying it would count
    it twice. The replay sends nothing (``covered_by_backfill``, exit 0), and a later
    like in the same Kafka partition, the barrier, leaves every count exact: 3, not 4."""
    since = datetime.now(UTC) - timedelta(seconds=5)
    events = TopicWatcher(stack.kafka_bootstrap, stack.events_topic)
    try:
        d = dead_lettered_like(api, stack, events)
        done = likes_cli("backfill", "--since", since.isoformat(), "--json")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert converge(stack, [d.post], timeout=120).clean
        assert redis_counts(stack, [d.post]) == {d.post: 2}

        # a run from long before every retained dead letter: the replay forgets it
        ancient = BackfillRun(datetime(2000, 1, 1, tzinfo=UTC), None, REBUILT, "done")
        backfill_runs.record(stack, ancient)

        rc, report = dlq_replay("--id", d.dlq_id)
        [item] = report["items"]
        assert rc == 0 and item["status"] == "covered_by_backfill", report
        kept = [r.started_at for r in backfill_runs.runs(stack)]
        assert ancient.started_at not in kept and any(at > since for at in kept), kept
        assert item["target"] is None and "backfill after it" in item["detail"]

        user3 = same_partition_user(d.post, d.src_partition, d.nparts)
        assert api.post(f"/v1/posts/{d.post}/like", headers=auth(stack, user3)).status_code == 200
        barrier = f"{d.post}:{user3}".encode()
        events.wait_until(lambda ms: any(m.key() == barrier for m in ms), timeout=90)
        final = converge(stack, [d.post], timeout=120)
        assert final.clean, final.summary()
        assert redis_counts(stack, [d.post]) == postgres_counts(stack, [d.post]) == {d.post: 3}
        sent = [m for m in events.poll_for(1) if dict(m.headers() or []).get("replayed_from")]
        assert not [m for m in sent if m.key() == d.key], "nothing was replayed"
    finally:
        events.close()
