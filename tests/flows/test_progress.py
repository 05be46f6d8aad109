"""The offsets publisher: one explicit ``OffsetProgress`` per flow process, no globals."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from bytewax.connectors.kafka import KafkaSourceMessage

from flows.progress import OffsetProgress, start_publisher
from schemas.redis_keys import flow_heartbeat_key, flow_progress_key


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, int]] = {}
        self.keys: set[str] = set()
        self.published = threading.Event()

    def set(self, key: str, value: str, ex: int) -> None:
        self.keys.add(key)

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
