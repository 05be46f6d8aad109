"""``OwnerOnlySink``: every item reaches the inner sink exactly once, written by the one
partition the owner lists (the cluster profile's two-process case is in tests/cluster);
with ``flush_s``, gathered and written on a timer and at every snapshot, a failed write
surfacing in the flow's thread. ``ProcessLocalSink``: in a cluster of two processes,
each process writes exactly the items it produced."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, cluster_main

from flows.streams import output
from sinks.owner import OWNER_KEY, OwnerOnlySink, ProcessLocalSink
from tests.conftest import free_port
from tests.flows.conftest import Runner


def test_every_item_written_once_through_the_owner(entry_point: Runner) -> None:
    items = list(range(500))
    written: list[int] = []
    flow = Dataflow("owner_sink")
    stream = op.input("in", flow, TestingSource(items, batch_size=7))
    output("out", stream, OwnerOnlySink(TestingSink(written), owns=True))
    entry_point(flow)
    assert sorted(written) == items  # values, unkeyed, none lost or doubled


def test_only_the_owner_lists_the_partition() -> None:
    inner: TestingSink[int] = TestingSink([])
    assert OwnerOnlySink(inner, owns=True).list_parts() == [OWNER_KEY]
    assert OwnerOnlySink(inner, owns=False).list_parts() == []


def test_gathered_items_are_written_once_in_a_flow(entry_point: Runner) -> None:
    items = list(range(500))
    written: list[int] = []
    flow = Dataflow("gathering_sink")
    stream = op.input("in", flow, TestingSource(items, batch_size=7))
    output("out", stream, OwnerOnlySink(TestingSink(written), owns=True, flush_s=0.05))
    entry_point(flow)
    assert sorted(written) == items


def test_gathered_items_wait_at_most_flush_s_and_never_past_a_snapshot() -> None:
    written: list[int] = []
    part = OwnerOnlySink(TestingSink(written), owns=True, flush_s=0.3).build_part(
        "s", OWNER_KEY, None
    )
    part.write_batch([1, 2])
    part.write_batch([3])
    assert written == [], "gathered, not yet written"
    deadline = time.monotonic() + 5
    while not written and time.monotonic() < deadline:
        time.sleep(0.02)
    assert written == [1, 2, 3], "one write after flush_s"
    part.write_batch([4])
    part.snapshot()  # the end of an epoch: everything gathered is written first
    assert written == [1, 2, 3, 4]
    part.write_batch([5])
    part.close()
    assert written == [1, 2, 3, 4, 5]


class _Slow(DynamicSink[int]):
    """Each write takes ``seconds``; records what it wrote, batch by batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.writing = threading.Event()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        sink = self

        class Part(StatelessSinkPartition[int]):
            def write_batch(self, items: list[int]) -> None:
                sink.writing.set()
                time.sleep(sink.seconds)
                sink.batches.append(list(items))

        return Part()


def test_gathering_never_waits_for_a_write_in_progress() -> None:
    slow = _Slow(0.6)
    part = OwnerOnlySink(slow, owns=True, flush_s=0.05).build_part("s", OWNER_KEY, None)
    part.write_batch([1, 2])
    assert slow.writing.wait(5), "the timer's write began"
    t0 = time.monotonic()
    part.write_batch([3])  # while [1, 2] is being written
    part.write_batch([4])
    assert time.monotonic() - t0 < 0.2, "the flow's thread waited for the write"
    part.snapshot()  # waits for the write in progress, then writes the rest
    assert [i for b in slow.batches for i in b] == [1, 2, 3, 4], "all, in order"
    part.close()


def test_a_write_slower_than_the_hold_holds_the_flow_back() -> None:
    """Past ``hold_s`` (1 s here) the flow's thread waits for the write in progress at
    its next batch: a hung store stops the flow (and its watchdog's beats) instead of
    the gathered items growing without bound."""
    slow = _Slow(2.0)
    part = OwnerOnlySink(slow, owns=True, flush_s=0.05).build_part("s", OWNER_KEY, None)
    part.write_batch([1])
    assert slow.writing.wait(5), "the timer's write began"
    began = time.monotonic()
    part.write_batch([2])  # within the hold: gathered, no wait
    assert time.monotonic() - began < 0.2
    time.sleep(1.2)
    part.write_batch([3])  # the write has run past the hold: wait for it
    assert time.monotonic() - began >= 1.9, "the flow's thread did not wait"
    assert slow.batches[0] == [1]
    part.close()
    assert [i for b in slow.batches for i in b] == [1, 2, 3]


class _Failing(DynamicSink[int]):
    def __init__(self) -> None:
        self.calls = 0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        sink = self

        class Part(StatelessSinkPartition[int]):
            def write_batch(self, items: list[int]) -> None:
                sink.calls += 1
                raise RuntimeError("store down")

        return Part()


def test_a_failed_gathered_write_stops_the_flow_at_its_next_call() -> None:
    inner = _Failing()
    part = OwnerOnlySink(inner, owns=True, flush_s=0.05).build_part("s", OWNER_KEY, None)
    part.write_batch([1])
    deadline = time.monotonic() + 5
    while not inner.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="store down"):
        part.write_batch([2])
    with pytest.raises(RuntimeError, match="store down"):
        part.snapshot()
    assert inner.calls >= 1


def test_a_flush_mark_means_everything_handed_before_it_is_written() -> None:
    """``on_flushed(step, t)``: every item handed before ``t`` is in the store, an empty
    flush included (an idle sink keeps its mark moving); a failed write marks nothing."""
    written: list[int] = []
    marks: list[tuple[str, float]] = []
    sink = OwnerOnlySink(TestingSink(written), owns=True, flush_s=0.05)
    sink.on_flushed = lambda step, at: marks.append((step, at))
    part = sink.build_part("windows", OWNER_KEY, None)
    handed = time.time()
    part.write_batch([1, 2])
    deadline = time.monotonic() + 5
    while not any(at > handed for _, at in marks) and time.monotonic() < deadline:
        time.sleep(0.02)
    after = [at for _, at in marks if at > handed]
    assert after and written == [1, 2], "a mark past the hand-off comes with the items"
    assert {step for step, _ in marks} == {"windows"}
    n = len(marks)
    time.sleep(0.3)
    assert len(marks) > n, "empty flushes keep the mark moving"
    part.close()

    failing, failed_marks = _Failing(), []
    bad = OwnerOnlySink(failing, owns=True, flush_s=0.05)
    bad.on_flushed = lambda step, at: failed_marks.append(at)
    bad_part = bad.build_part("s", OWNER_KEY, None)
    bad_part.write_batch([1])
    deadline = time.monotonic() + 5
    while not failing.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert failing.calls >= 1 and failed_marks == [], "a failed write marks nothing"


class _Letters(StatefulSourcePartition[str, None]):
    def __init__(self, letter: str) -> None:
        self._left = [f"{letter}{i}" for i in range(100)]

    def next_batch(self) -> list[str]:
        if not self._left:
            raise StopIteration
        out, self._left = self._left[:7], self._left[7:]
        return out

    def snapshot(self) -> None:
        return None


class _OneLetterPerProcess(FixedPartitionedSource[str, None]):
    """Process 0 produces ``a0..a99``, process 1 ``b0..b99``."""

    def __init__(self, process_id: int) -> None:
        self._letter = "ab"[process_id]

    def list_parts(self) -> list[str]:
        return [self._letter]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Letters:
        return _Letters(for_part)


def test_each_process_writes_exactly_its_own_items() -> None:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    written: dict[int, list[str]] = {0: [], 1: []}

    def process(i: int) -> None:  # a Bytewax process; cluster_main releases the GIL
        flow = Dataflow("process_local")
        stream = op.input("in", flow, _OneLetterPerProcess(i))
        sink = ProcessLocalSink(TestingSink(written[i]), process_id=i, flush_s=0.05)
        output("out", stream, sink)
        cluster_main(flow, addresses, i, epoch_interval=timedelta(milliseconds=20))

    threads = [threading.Thread(target=process, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(written[0]) == sorted(f"a{i}" for i in range(100))
    assert sorted(written[1]) == sorted(f"b{i}" for i in range(100))
