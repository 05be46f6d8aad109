"""Where the counts flow's CPU goes: the flow under cProfile (diagnostic only).

``python -m bench.flow_profile [--messages N | --seconds S]`` runs the production counts
flow with all its sinks (:func:`bench.flow_build.bench_flow`, settings from the
``LIKES_*`` variables) with ``bytewax.testing.run_main`` (one worker in the calling
thread, so cProfile sees it; recovery on) and prints ``BENCH {"event": "profile", ...}``:
self time grouped by module, per input message. Bulk mode (``--messages``: the topic's
known size, read to its end) profiles wall time, since a wait on a store blocks the
single worker; trickle mode (``--seconds``: tail the topic while events arrive at a
live-like rate) profiles the worker thread's CPU time, since waiting for events is idle.
cProfile inflates Python call overhead: read the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from datetime import datetime, timedelta
from typing import Any, cast

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import run_main

from bench.children import emit
from bench.flow_build import bench_flow
from bench.profile_stats import by_place, self_times, shares
from core.settings import FlowSettings
from flows.decode import RawPartition
from flows.kafka_input import BatchItem, kafka_source
from flows.runner import ensure_recovery

Offset = int | None


class _Counted:
    """Messages read so far, and when reading stops (trickle mode)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.n = 0


class _UntilPart(StatefulSourcePartition[BatchItem, Offset]):
    def __init__(self, inner: StatefulSourcePartition[BatchItem, Offset], c: _Counted) -> None:
        self.inner, self.c = inner, c

    def next_batch(self) -> list[BatchItem]:
        if self.c.deadline is not None and time.time() > self.c.deadline:
            raise StopIteration()
        batch = list(self.inner.next_batch())
        self.c.n += sum(len(i.offsets) if isinstance(i, RawPartition) else 1 for i in batch)
        return batch

    def next_awake(self) -> datetime | None:
        return self.inner.next_awake()

    def snapshot(self) -> Offset:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class CountingSource(FixedPartitionedSource[BatchItem, Offset]):
    """A tailing Kafka source whose messages are counted, ending at a deadline."""

    def __init__(self, inner: KafkaSource, counted: _Counted) -> None:
        self.inner, self.counted = inner, counted

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Offset) -> _UntilPart:
        # a batch source's partitions emit BatchItems (KafkaSource's type says messages)
        inner = cast(Any, self.inner.build_part(step_id, for_part, resume_state))
        return _UntilPart(inner, self.counted)


def main() -> None:
    """Profile the flow and print the grouped self time."""
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=0, help="known input size (bulk mode)")
    p.add_argument("--seconds", type=float, default=0.0, help="tail this long (trickle mode)")
    a = p.parse_args()
    s = FlowSettings()
    trickle = a.seconds > 0
    counted = _Counted(time.time() + a.seconds if trickle else None)
    source = kafka_source(s, tail=trickle, batches=True)
    flow = bench_flow(s, "full", CountingSource(source, counted) if trickle else source)
    recovery = ensure_recovery(s, "counts")
    # bulk: wall time of the worker thread (a wait on a sink blocks it, so it counts);
    # trickle: its CPU time (waiting for events to arrive is idle, not cost)
    prof = cProfile.Profile(time.thread_time) if trickle else cProfile.Profile()
    t0, cpu0 = time.time(), time.process_time()
    prof.enable()
    run_main(  # type: ignore[no-untyped-call]  # bytewax's stub leaves run_main untyped
        flow, epoch_interval=timedelta(seconds=s.snapshot_interval_s), recovery_config=recovery
    )
    prof.disable()
    if dump := os.environ.get("LIKES_PROFILE_DUMP"):  # for pstats' callers, snakeviz
        prof.dump_stats(dump)
    cpu, wall = time.process_time() - cpu0, time.time() - t0
    messages = a.messages or counted.n
    times = self_times(pstats.Stats(prof))
    total = sum(times.values())
    emit(
        "profile",
        profiled_s=round(total, 3),
        us_per_message_profiled=round(total / max(messages, 1) * 1e6, 1),
        share=shares(by_place(times), 14),
        wall_s_profiled=round(wall, 2),
        messages=messages,
        process_cpu_us_per_message_profiled=round(cpu / max(messages, 1) * 1e6, 1),
    )


if __name__ == "__main__":
    main()
