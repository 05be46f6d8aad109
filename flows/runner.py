"""Run a dataflow as a long-lived process with Bytewax recovery (``likes flow NAME``).

Recovery partitions are created once under ``<recovery_dir>/<flow>``; their number is
fixed forever (``recovery_partitions``). Kafka offsets live only there: deleting them
re-reads the topic from the start of retention, and a stored offset that retention
already dropped fails loudly (``auto.offset.reset=error``) instead of skipping data.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from core.settings import FlowSettings
from flows.progress import OffsetProgress, start_publisher

log = logging.getLogger(__name__)
FLOWS = ("counts", "fanout")


def build_production_flow(
    name: str, s: FlowSettings, progress: OffsetProgress | None = None
) -> Dataflow:
    """The named flow wired to the real sinks (read offsets recorded in ``progress``)."""
    if name == "counts":
        from flows.counts import build_flow
        from flows.production_sinks import counts_sinks

        return build_flow(s, counts_sinks(s), progress=progress)
    if name == "fanout":
        from flows.fanout import build_flow as build_fanout
        from flows.production_sinks import fanout_sinks

        return build_fanout(s, fanout_sinks(s), progress=progress)
    raise SystemExit(f"unknown flow {name!r}; known: {', '.join(FLOWS)}")


def ensure_recovery(s: FlowSettings, name: str) -> RecoveryConfig:
    """The flow's recovery store, initialised on first use."""
    path = s.recovery_path(name)
    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, s.recovery_partitions)
    return RecoveryConfig(str(path), backup_interval=timedelta(seconds=s.backup_interval_s))


def serve_analysts(url: str, port: int) -> None:
    """With embedded chDB this process owns the store, so it also answers analysts'
    read-only SQL (on a connection of their own) and reconcile's correction rows."""
    from sinks import clickhouse_store

    if not clickhouse_store.is_embedded(url):
        return
    from analytics.server import REPAIR_COLUMNS, start_in_thread

    clickhouse_store.ensure_schema(url)

    def write_repairs(rows: list[tuple[Any, ...]]) -> None:
        clickhouse_store.insert(url, "post_like_window_parts", rows, REPAIR_COLUMNS)

    start_in_thread(url, port, write_repairs=write_repairs)


def run(name: str, *, process_id: int | None = None, addresses: list[str] | None = None) -> None:
    """Run flow ``name`` until killed."""
    s = FlowSettings()
    progress = OffsetProgress()
    flow = build_production_flow(name, s, progress)
    recovery = ensure_recovery(s, name)
    if name == "counts":
        serve_analysts(s.effective_clickhouse_url, s.analytics_port)
    start_publisher(s.redis_url, name, progress)
    log.info("flow %s starting (recovery %s)", name, recovery.db_dir)
    cli_main(
        flow,
        workers_per_process=1,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=s.snapshot_interval_s),
        recovery_config=recovery,
    )
