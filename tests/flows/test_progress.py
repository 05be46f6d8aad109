"""The offsets publisher: one explicit ``OffsetProgress`` per flow process, no globals."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from bytewax.connectors.kafka import KafkaSourceMessage

from flows.progress import OffsetProgress, restart_at, start_publisher
from schemas.redis_keys import flow_heartbeat_key, flow_progress_key, flow_written_key


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, int]] = {}
        self.keys: set[str] = set()
        self.values: dict[str, str] = {}
        self.published = threading.Event()

    def set(self, key: str, value: str, ex: int) -> None:
        self.keys.add(key)
        self.values[key] = value

    def hset(self, key: str, mapping: dict[str, int]) -> None:
        self.hashes.setdefault(key, {}).update(mapping)
        self.published.set()


def test_publisher_writes_the_given_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRedis()
    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **kw: fake)
    mine, other = OffsetProgress(), OffsetProgress()
    mine.record("s", KafkaSourceMessage(key=None, value=b"", partition=2, offset=41))
    other.record("s", KafkaSourceMessage(key=None, value=b"", partition=5, offset=9))
    stop = start_publisher("redis://fake", "counts", mine, every_s=0.01)
    try:
        assert fake.published.wait(5)
    finally:
        stop.set()
    assert fake.hashes == {flow_progress_key("counts"): {"2": 42}}
    assert flow_heartbeat_key("counts") in fake.keys


def test_publisher_without_progress_sends_heartbeats_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRedis()
    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **kw: fake)
    stop = start_publisher("redis://fake", "fanout", every_s=0.01)
    deadline = time.monotonic() + 5
    while not fake.keys and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    assert fake.keys == {flow_heartbeat_key("fanout")}
    assert fake.hashes == {}


def test_written_through_is_the_earliest_mark_of_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    progress = OffsetProgress()
    assert progress.written_through() is None, "nothing flushed yet: no mark"
    progress.flushed("windows", 100.0)
    progress.flushed("like_events", 90.0)
    progress.flushed("windows", 95.0)  # an older mark changes nothing
    assert progress.written_through() == 90.0
    progress.flushed("like_events", 120.0)
    assert progress.written_through() == 100.0
    fake = FakeRedis()
    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **kw: fake)
    stop = start_publisher(
        "redis://fake", "analytics", progress, every_s=0.01, member="flow-analytics"
    )
    deadline = time.monotonic() + 5
    while flow_written_key("analytics", "flow-analytics") not in fake.keys:
        assert time.monotonic() < deadline, fake.keys
        time.sleep(0.01)
    stop.set()
    assert float(fake.values[flow_written_key("analytics", "flow-analytics")]) == 100.0


def test_restart_at_replaces_the_published_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """``likes flows-reset``: the old offsets go (a quiet partition would otherwise keep
    a stale, lower one and look behind forever) and the new start offsets stand in."""
    calls: list[tuple[str, object]] = []

    class Pipe:
        def __enter__(self) -> Pipe:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def delete(self, key: str) -> None:
            calls.append(("delete", key))

        def hset(self, key: str, mapping: dict[str, int]) -> None:
            calls.append(("hset", (key, mapping)))

        def execute(self) -> None:
            calls.append(("execute", None))

    class Client:
        def pipeline(self, transaction: bool) -> Pipe:
            assert transaction, "one MULTI/EXEC: no reader sees the hash half replaced"
            return Pipe()

    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **kw: Client())
    restart_at("redis://fake", "analytics", {0: 10, 3: 7})
    key = flow_progress_key("analytics")
    assert calls == [("delete", key), ("hset", (key, {"0": 10, "3": 7})), ("execute", None)]
