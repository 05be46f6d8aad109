"""Bench-only entry: the counts flow over a pre-filled topic, ending at its end.

``python -m bench.flow_entry --topic T --mode full|redis [...]`` builds the production
flow with ``flows.counts.build_flow`` and the same Kafka settings as production, but a
``KafkaSource(tail=False)``, so the flow stops at the end of every partition. It runs
the way ``likes flow counts`` does (``bytewax.run.cli_main``, recovery snapshots every
``snapshot_interval_s``, optionally several processes with ``process_id``/``addresses``)
with every store isolated by the caller (own Redis db, Postgres schema, chDB dir,
recovery dir, hot/DLQ topics). Prints one JSON line ``BENCH {...}`` with wall-clock
``ready`` (start-up done) and ``end`` times, and the process's CPU seconds in between.

``--mode redis`` keeps only the Redis count sink (the others discard): the same job as
the Quix Streams comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition


class _Discard(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        return None


class DiscardSink(DynamicSink[Any]):
    """Drops everything (outputs that the compared job does not have)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--topic", required=True)
    p.add_argument("--mode", choices=["full", "redis"], default="full")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--pg-url", required=True)
    p.add_argument("--chdb-dir", required=True)
    p.add_argument("--recovery-dir", required=True)
    p.add_argument("--hot-topic", required=True)
    p.add_argument("--dlq-topic", required=True)
    p.add_argument("--process-id", type=int)
    p.add_argument("--addresses")
    a = p.parse_args()

    from bytewax.connectors.kafka import KafkaSource
    from bytewax.run import cli_main
    from confluent_kafka import OFFSET_BEGINNING

    from core.settings import FlowSettings
    from flows.counts import CountsSinks, build_flow
    from flows.runner import ensure_recovery

    s = FlowSettings(
        events_topic=a.topic,
        recovery_dir=Path(a.recovery_dir),
        clickhouse_url=f"chdb://{a.chdb_dir}",
        redis_url=a.redis_url,
        postgres_url=a.pg_url,
        hot_topic=a.hot_topic,
        dlq_topic=a.dlq_topic,
    )
    if a.mode == "full":
        from flows.production_sinks import counts_sinks
        from sinks import clickhouse_store

        sinks = counts_sinks(s)
        clickhouse_store.ensure_schema(s.effective_clickhouse_url)  # start-up, not timed
        # clickhouse-connect imports pandas lazily on the first insert (~3 s here): a
        # start-up cost of every flow process, kept out of the throughput figure.
        from clickhouse_connect.driver import options

        options.check_pandas()
    else:
        from sinks.redis_counts import RedisCountSink

        sinks = CountsSinks(
            dead_letters=DiscardSink(),
            like_events=DiscardSink(),
            windows=DiscardSink(),
            counts=[RedisCountSink(s.redis_url)],
            hot=[],
        )
    source = KafkaSource(
        [s.kafka_bootstrap],
        [s.events_topic],
        tail=False,
        starting_offset=OFFSET_BEGINNING,
        # production's settings (flows/counts.py read_events)
        add_config={"auto.offset.reset": "error", "fetch.wait.max.ms": "100"},
        batch_size=s.batch_size,
    )
    flow = build_flow(s, sinks, source=source)
    recovery = ensure_recovery(s, "counts")
    addresses = a.addresses.split(";") if a.addresses else None
    ready = time.time()
    cpu0 = _cpu()
    print("BENCH " + json.dumps({"event": "ready", "t": ready}), flush=True)
    cli_main(
        flow,
        workers_per_process=1,
        process_id=a.process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=s.snapshot_interval_s),
        recovery_config=recovery,
    )
    end = time.time()
    cpu = _cpu() - cpu0
    print(
        "BENCH " + json.dumps({"event": "end", "t": end, "ready": ready, "cpu_s": round(cpu, 3)}),
        flush=True,
    )


def _cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


if __name__ == "__main__":
    main()
