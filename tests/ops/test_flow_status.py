"""``ops.flow_status.FlowWatch`` against the stack's Redis: what a flow has read (its
published progress against given end offsets) and what its processes have written (the
earliest of their marks), as reconcile, the erasure and the exporter read them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from core.settings import CommonSettings
from ops.flow_status import FlowWatch, flow_lag
from schemas.redis_keys import flow_progress_key, flow_written_key

pytestmark = pytest.mark.integration  # needs the stack


@pytest.fixture()
def flow(stack: CommonSettings) -> Iterator[str]:
    """A flow name nobody else publishes under; its keys removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    r = redis.Redis.from_url(stack.redis_url)
    r.delete(flow_progress_key(name), *r.keys(flow_written_key(name)))
    r.close()


def test_lag_counts_every_partition_below_the_ends(stack: CommonSettings, flow: str) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    r.hset(flow_progress_key(flow), mapping={"0": 10, "1": 7})
    ends = {0: 10, 1: 9, 2: 4}  # partition 2 never published: all of it is behind
    with FlowWatch(stack) as watch:
        assert watch.lag(flow, ends) == {"lag": 6, "per_partition": {0: 0, 1: 2, 2: 4}}
        assert not watch.passed(flow, ends)
        assert watch.passed(flow, {0: 10, 1: 7})
        assert watch.passed(flow, {0: 3})  # progress beyond the ends is no negative lag
    assert flow_lag(stack, flow, ends)["lag"] == 6  # the one-reading form agrees
    r.close()


def test_written_through_is_the_earliest_member_mark(stack: CommonSettings, flow: str) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    with FlowWatch(stack) as watch:
        assert watch.written_through(flow) is None, "no process publishes a mark"
        r.set(flow_written_key(flow, "0"), "200.5", ex=60)
        r.set(flow_written_key(flow, "1"), "100.25", ex=60)
        assert watch.written_through(flow) == 100.25  # the slowest process bounds it
        r.delete(flow_written_key(flow, "1"))  # that process is gone (its TTL ran out)
        assert watch.written_through(flow) == 200.5
    r.close()
