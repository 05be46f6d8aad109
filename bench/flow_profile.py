"""Where the counts flow's CPU goes: the flow under cProfile (diagnostic only).

``python -m bench.flow_profile --topic T --redis-url U --pg-url P --chdb-dir D
--recovery-dir R --hot-topic H --dlq-topic Q`` runs the production counts flow with all
its sinks over a pre-filled topic to its end with ``bytewax.testing.run_main`` (one
worker in the calling thread, so cProfile sees it; recovery on) and prints
``BENCH {"event": "profile", ...}``: self time grouped by module, per input message.
Bulk mode profiles wall time (a wait on a store blocks the single worker, so it counts);
trickle mode (``--seconds``: tail the topic while events arrive at a live-like rate)
profiles the worker thread's CPU time, since waiting for events is idle. cProfile
inflates Python call overhead: read the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import pstats
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any


def builtin_name(name: str) -> str:
    """``<method 'consume' of 'cimpl.Consumer' objects>`` -> ``cimpl.Consumer.consume``."""
    m = re.match(r"<method '(\w+)' of '([\w.]+)' objects>", name)
    if m:
        return f"{m.group(2)}.{m.group(1)}"
    m = re.match(r"<built-in method ([\w.]+)>", name)
    if m:
        return m.group(1)
    return name[:60]


def group_stats(st: pstats.Stats, per: int, top: int = 14) -> dict[str, Any]:
    by: collections.Counter[str] = collections.Counter()
    for (fname, _line, name), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in fname:
            key = fname.split("site-packages/")[1].split("/")[0]
        elif "/bench/" in fname:
            key = "bench"
        elif "/work/main/" in fname:
            key = fname.split("/work/main/")[1]
        elif "python3.11/" in fname:
            key = "stdlib:" + fname.split("python3.11/")[1].split("/")[0]
        elif fname == "~":
            key = builtin_name(name)
        else:
            key = fname
        by[key] += tt
    total = sum(by.values())
    return {
        "profiled_s": round(total, 3),
        "us_per_message_profiled": round(total / per * 1e6, 1),
        "share": {k: round(v / total, 3) for k, v in by.most_common(top)},
    }


def _stop_after(src: Any, deadline: float, counter: list[int]) -> Any:
    """A KafkaSource whose partitions end at ``deadline`` (tail mode has no end)."""
    from bytewax.connectors.kafka import KafkaSource
    from bytewax.inputs import StatefulSourcePartition

    class Part(StatefulSourcePartition[Any, Any]):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def next_batch(self) -> Any:
            if time.time() > deadline:
                raise StopIteration()
            batch = self.inner.next_batch()
            counter[0] += len(batch)
            return batch

        def next_awake(self) -> Any:
            return self.inner.next_awake()

        def snapshot(self) -> Any:
            return self.inner.snapshot()

        def close(self) -> None:
            self.inner.close()

    class Stopping(KafkaSource):  # type: ignore[misc]
        def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
            return Part(super().build_part(step_id, for_part, resume_state))

    stopping = Stopping.__new__(Stopping)
    stopping.__dict__.update(src.__dict__)
    return stopping


def main() -> None:
    p = argparse.ArgumentParser()
    for arg in (
        "topic",
        "redis-url",
        "pg-url",
        "chdb-dir",
        "recovery-dir",
        "hot-topic",
        "dlq-topic",
    ):
        p.add_argument(f"--{arg}", required=True)
    p.add_argument("--messages", type=int, default=0, help="known input size (bulk mode)")
    p.add_argument(
        "--seconds", type=float, default=0.0, help="tail the topic this long (trickle mode)"
    )
    a = p.parse_args()

    from bytewax.connectors.kafka import KafkaSource
    from bytewax.testing import run_main
    from clickhouse_connect.driver import options
    from confluent_kafka import OFFSET_BEGINNING

    from core.settings import FlowSettings
    from flows.counts import build_flow
    from flows.production_sinks import counts_sinks
    from flows.runner import ensure_recovery
    from sinks import clickhouse_store

    s = FlowSettings(
        events_topic=a.topic,
        recovery_dir=Path(a.recovery_dir),
        clickhouse_url=f"chdb://{a.chdb_dir}",
        redis_url=a.redis_url,
        postgres_url=a.pg_url,
        hot_topic=a.hot_topic,
        dlq_topic=a.dlq_topic,
    )
    sinks = counts_sinks(s)
    clickhouse_store.ensure_schema(s.effective_clickhouse_url)
    options.check_pandas()
    src = KafkaSource(
        [s.kafka_bootstrap],
        [a.topic],
        tail=a.seconds > 0,
        starting_offset=OFFSET_BEGINNING,
        add_config={"auto.offset.reset": "error", "fetch.wait.max.ms": "100"},
        batch_size=s.batch_size,
    )
    counter = [0]
    if a.seconds > 0:
        src = _stop_after(src, time.time() + a.seconds, counter)
    flow = build_flow(s, sinks, source=src)
    rec = ensure_recovery(s, "counts")
    # bulk: wall time of the worker thread (a wait on a sink blocks it, so it counts);
    # trickle: its CPU time (waiting for events to arrive is idle, not cost)
    prof = cProfile.Profile(time.thread_time) if a.seconds > 0 else cProfile.Profile()
    t0 = time.time()
    cpu0 = time.process_time()
    prof.enable()
    run_main(flow, epoch_interval=timedelta(seconds=s.snapshot_interval_s), recovery_config=rec)
    prof.disable()
    cpu = time.process_time() - cpu0
    out = group_stats(pstats.Stats(prof), a.messages or max(counter[0], 1))
    out["wall_s_profiled"] = round(time.time() - t0, 2)
    out["messages"] = a.messages or counter[0]
    out["process_cpu_us_per_message_profiled"] = round(cpu / max(out["messages"], 1) * 1e6, 1)
    print("BENCH " + json.dumps({"event": "profile", **out}), flush=True)


if __name__ == "__main__":
    main()
