"""Run a dataflow as a long-lived process with Bytewax recovery (``likes flow NAME``).

Recovery partitions are created once under ``<recovery_dir>/<flow>``; their number is
fixed forever (``recovery_partitions``). Kafka offsets live only there: deleting them
re-reads the topic from the start of retention (unless ``likes flows-reset`` recorded
where a fresh store starts: :mod:`flows.start_offsets`), and a stored offset that
retention already dropped fails loudly (``auto.offset.reset=error``) instead of
skipping data.

The ``analytics`` flow's process owns an embedded chDB store (one process per data path)
and so also serves analysts' read-only SQL and reconcile's repair rows
(:func:`serve_analysts`); the ``counts`` flow never opens ClickHouse.

Each flow process serves Prometheus metrics (:mod:`flows.metrics`) on its own port,
:func:`flows.metrics.metrics_port` of ``flow_metrics_port_base``; its dead-letter sink
is wrapped to count what it writes, and every sink's series exist from the start.

A flow process that stops making progress (its main loop has not polled its input, and
no sink has retried a write, for ``flow_stall_s``) dumps its threads' stacks to its log
and exits, so its supervisor restarts it (:mod:`core.watchdog`): a deadlock or a write
that never returns costs a restart and a replay from the last snapshot, not a silent
outage of its projections while the process looks alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from core import watchdog
from core.settings import FlowSettings
from flows import metrics, start_offsets
from flows.progress import OffsetProgress, start_publisher
from sinks.base import StoreSink
from sinks.metrics import SINK_ERRORS, SINK_RETRIES, SINK_WRITE_SECONDS
from sinks.owner import RoutedSink

log = logging.getLogger(__name__)
FLOWS = ("counts", "fanout", "analytics")


def build_production_flow(
    name: str, s: FlowSettings, progress: OffsetProgress | None = None, process_id: int = 0
) -> Dataflow:
    """The named flow wired to the real sinks (read offsets recorded in ``progress``),
    its dead letters counted; process 0 of a cluster owns an embedded ClickHouse."""
    if name == "counts":
        from flows.counts import build_flow
        from flows.production_sinks import counts_sinks

        sinks = counts_sinks(s, process_id)
        instrument_sinks(name, sinks, progress)
        return build_flow(s, sinks, progress=progress)
    if name == "fanout":
        from flows.fanout import build_flow as build_fanout
        from flows.production_sinks import fanout_sinks

        fanout = fanout_sinks(s, process_id)
        instrument_sinks(name, fanout, progress)
        return build_fanout(s, fanout, progress=progress)
    if name == "analytics":
        from flows.analytics import build_flow as build_analytics
        from flows.production_sinks import analytics_sinks

        analytics = analytics_sinks(s, owns_store=process_id == 0)
        instrument_sinks(name, analytics, progress)
        return build_analytics(s, analytics, progress=progress)
    raise SystemExit(f"unknown flow {name!r}; known: {', '.join(FLOWS)}")


def instrument_sinks(flow: str, sinks: Any, progress: OffsetProgress | None = None) -> None:
    """Count ``sinks.dead_letters`` writes per flow, create every store sink's series at
    0, and tell ``progress`` of every gathered flush (``sinks`` is a ``CountsSinks``,
    ``FanoutSinks`` or ``AnalyticsSinks``)."""
    if isinstance(sinks.dead_letters, DynamicSink):
        counter = metrics.FLOW_DEAD_LETTERS.labels(flow)
        sinks.dead_letters = metrics.CountedSink(sinks.dead_letters, counter)
    for value in vars(sinks).values():
        for sink in value if isinstance(value, list) else [value]:
            inner = sink
            while isinstance(inner, metrics.CountedSink | RoutedSink):
                if isinstance(inner, RoutedSink) and progress is not None:
                    inner.on_flushed = progress.flushed
                inner = inner.inner
            if isinstance(inner, StoreSink):
                SINK_WRITE_SECONDS.labels(inner.name)
                SINK_ERRORS.labels(inner.name)
                SINK_RETRIES.labels(inner.name)


def serve_metrics(s: FlowSettings, name: str, process_id: int | None) -> None:
    """Start the flow process's /metrics server (see :mod:`flows.metrics`)."""
    metrics.init_flow_series(name)
    if name == "counts":
        metrics.HOT_FIGURES.expect()
    port = metrics.metrics_port(s.flow_metrics_port_base, FLOWS, name, process_id)
    metrics.serve(s.metrics_host, port)


# the steps keyed by Kafka partition: the decode (stateless, so its rows may be gone)
# and the stages whose state a resume would lose (counts, analytics: dedupe_window;
# fanout: dedupe)
_PARTITION_KEYED = """SELECT DISTINCT state_key FROM snaps
WHERE step_id LIKE '%.read_events.decode' OR step_id LIKE '%.dedupe_window'
   OR step_id LIKE '%.dedupe'"""


class OldStageKeys(RuntimeError):
    """The recovery store keeps per-partition state under keys this code no longer uses."""


def refuse_old_stage_keys(path: Path) -> None:
    """Raise :class:`OldStageKeys` if the store at ``path`` holds per-partition stage
    state under the plain ``str(partition)`` keys of before :mod:`flows.routing`: the
    flow would resume those partitions with empty dedupe and window state, and its
    projections could drift silently. The runbook for a lost store rebuilds it
    (``likes flows-reset``)."""
    old: set[str] = set()
    for part in sorted(path.glob("part-*.sqlite3")):
        with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            rows = db.execute(_PARTITION_KEYED).fetchall()
        old.update(key for (key,) in rows if ":" not in key)
    if old:
        listed = ", ".join(sorted(old, key=lambda k: (len(k), k)))
        raise OldStageKeys(
            f"the recovery store {path} keeps the state of Kafka partitions {listed} under "
            "keys from before flows.routing (CHANGELOG, 2026-12-06): run `likes flows-reset` "
            "(README, runbook for a lost recovery store) to rebuild it"
        )


def ensure_recovery(s: FlowSettings, name: str) -> RecoveryConfig:
    """The flow's recovery store, initialised on first use (once, when the processes of
    a cluster start together)."""
    path = s.recovery_path(name)
    path.mkdir(parents=True, exist_ok=True)
    with (path / ".init.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(path.glob("part-*.sqlite3")):
            init_db_dir(path, s.recovery_partitions)
    return RecoveryConfig(str(path), backup_interval=timedelta(seconds=s.backup_interval_s))


def serve_analysts(url: str, port: int) -> None:
    """With embedded chDB the analytics flow's process owns the store, so it also answers
    analysts' read-only SQL (on a connection of their own), reconcile's correction rows
    and erasures' anonymization, on ``127.0.0.1:<analytics_port>``."""
    from sinks import clickhouse_erasure, clickhouse_store
    from sinks.clickhouse_sinks import insert_retrying

    if not clickhouse_store.is_embedded(url):
        return
    from analytics.server import REPAIR_COLUMNS, start_in_thread

    clickhouse_store.ensure_schema(url)

    def write_repairs(rows: list[tuple[Any, ...]]) -> None:
        insert_retrying(url, "post_like_window_parts", rows, REPAIR_COLUMNS)

    def erase_user(user_id: int) -> int:
        return clickhouse_erasure.erase_user(url, user_id)

    start_in_thread(url, port, write_repairs=write_repairs, erase_user=erase_user)


def run(name: str, *, process_id: int | None = None, addresses: list[str] | None = None) -> None:
    """Run flow ``name`` until killed."""
    s = FlowSettings()
    starts = start_offsets.read(s.recovery_path(name))
    if starts:  # a store reset by `likes flows-reset`: start where it was reset
        s = s.model_copy(update={"start_offsets": starts})
    if process_id is not None and addresses:  # one worker per process
        s = s.model_copy(update={"reader": (process_id, len(addresses))})
    if "edge_store" not in s.model_fields_set:
        s = s.model_copy(update={"edge_store": True})
    progress = OffsetProgress()
    flow = build_production_flow(name, s, progress, process_id or 0)
    recovery = ensure_recovery(s, name)
    refuse_old_stage_keys(s.recovery_path(name))
    if name == "analytics" and not process_id:
        serve_analysts(s.effective_clickhouse_url, s.analytics_port)
    member = f"flow-{name}" if process_id is None else f"flow-{name}-{process_id}"
    start_publisher(s.redis_url, name, progress, member=member)
    serve_metrics(s, name, process_id)
    watchdog.arm(s.flow_stall_s)
    log.info("flow %s starting (recovery %s)", name, recovery.db_dir)
    cli_main(
        flow,
        workers_per_process=1,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=s.snapshot_interval_s),
        recovery_config=recovery,
    )
