"""``likes exporter``: the Prometheus series that no single process owns (contract section 7).

A long-running process serves ``/metrics`` on ``metrics_host:exporter_port`` and polls
the stores every ``exporter_interval_s`` seconds; a scrape returns the last complete
poll and never waits for a store. Each source is polled on its own: one that is
unreachable hides only the series it provides (``likes_component_up`` says so, and
``likes_cdc_connector_up`` drops to 0); nothing stops the exporter.

- ``likes_component_up{component}``: postgres, redis and kafka answer; Connect's REST API
  answers (``connect``).
- ``likes_component_start_time_seconds{component}``: when the supervisor last started
  each component (local profile only: compose has no supervisord), so a restart of a
  store or server that exports no ``process_start_time_seconds`` of its own (Postgres,
  Redis, Kafka, Connect, Prometheus) is seen after the fact (alert ``ComponentRestarted``).
- ``likes_cdc_connector_up``: 1 when the outbox connector and all its tasks run.
- ``likes_cdc_lag_seconds``: newest outbox commit minus the newest event on Kafka.
- ``likes_cdc_slot_present``, ``likes_cdc_slot_active``, ``likes_cdc_slot_lost`` (its
  ``wal_status`` is ``lost``: invalidated) and ``likes_cdc_slot_retained_wal_bytes``.
- ``likes_flow_lag_messages{flow}``: Kafka end offsets minus the offsets the flow
  published; it keeps growing while the flow is down.
- ``likes_dlq_messages``: dead letters retained in the DLQ topic.
- ``likes_projection_drift_posts{projection}`` and
  ``likes_projection_drift_timestamp_seconds``: what the last ``likes reconcile`` left.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import psycopg
import redis
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core import watchdog
from core.settings import CommonSettings
from core.topology import connect_workers
from devstack.components import FLOW_NAMES
from devstack.java_stack import connector_state
from devstack.supervisor import Supervisor, configured
from ops.cdc import cdc_lag
from ops.flow_status import FlowWatch, end_offsets
from schemas.cdc import SLOT_NAME
from schemas.redis_keys import LAST_DRIFT_KEY

log = logging.getLogger(__name__)
T = TypeVar("T")
Sample = tuple[str, tuple[str, ...], float]

SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "likes_component_up": ("A store or server the exporter probes answers", ("component",)),
    "likes_component_start_time_seconds": (
        "When the supervisor last started a component (epoch seconds)",
        ("component",),
    ),
    "likes_cdc_connector_up": ("The outbox connector and all its tasks are RUNNING", ()),
    "likes_cdc_lag_seconds": ("Newest outbox commit minus the newest event on Kafka", ()),
    "likes_cdc_slot_present": ("The connector's replication slot exists", ()),
    "likes_cdc_slot_active": ("A walsender streams from the replication slot", ()),
    "likes_cdc_slot_lost": ("The replication slot is invalidated (wal_status lost)", ()),
    "likes_cdc_slot_retained_wal_bytes": ("WAL the replication slot keeps from removal", ()),
    "likes_flow_lag_messages": ("Kafka end offsets minus the offsets a flow processed", ("flow",)),
    "likes_dlq_messages": ("Dead letters retained in the DLQ topic", ()),
    "likes_projection_drift_posts": ("Posts the last reconcile left drifting", ("projection",)),
    "likes_projection_drift_timestamp_seconds": ("When the last reconcile ran", ()),
}
POLL_ERRORS = Counter(
    "likes_exporter_poll_errors_total", "Polls of a source that failed", ["source"]
)
STALL_MIN_S = 120.0  # a poll's sources time out within seconds each
STALL_POLLS = 10
SUPERVISOR_TIMEOUT_S = 10.0
POLL_SECONDS = Gauge("likes_exporter_poll_seconds", "Duration of the last poll")
LAST_POLL = Gauge("likes_exporter_last_poll_timestamp_seconds", "When the last poll ended")


def slot_state(postgres_url: str) -> dict[str, Any] | None:
    """The outbox connector's replication slot (active, ``wal_status``, WAL retained from
    its ``restart_lsn``), or None when it does not exist."""
    with psycopg.connect(postgres_url, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT active, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (SLOT_NAME,),
        ).fetchone()
    if row is None:
        return None
    return {
        "name": SLOT_NAME,
        "active": bool(row[0]),
        "wal_status": row[1],
        "retained_wal_bytes": int(row[2]) if row[2] is not None else None,
    }


def dlq_depth(bootstrap: str, topic: str, timeout: float = 5.0) -> int:
    """Messages retained in ``topic`` (high minus low watermark, over its partitions)."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "likes-status", "enable.auto.commit": False}
    )
    try:
        meta = c.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"{topic}: {meta.error}")
        total = 0
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            total += max(0, high - low)
        return total
    finally:
        c.close()


def last_drift(redis_url: str) -> dict[str, Any] | None:
    """What ``likes reconcile`` recorded last (``at`` and drifting posts per projection)."""
    raw = redis.Redis.from_url(redis_url, socket_timeout=2).get(LAST_DRIFT_KEY)
    return dict(json.loads(raw)) if raw else None


def _connector_state(s: CommonSettings) -> str | None:
    """The connector's state as the first Connect worker that answers reports it (in the
    cluster profile any worker knows the whole group's); None if none answers."""
    for worker in connect_workers(s):
        state = connector_state(worker.url)
        if state is not None:
            return state
    return None


def _ping(redis_url: str) -> bool:
    return bool(redis.Redis.from_url(redis_url, socket_timeout=2).ping())


class Exporter(Collector):
    """Polls the sources (:meth:`poll`) and serves the last poll's samples."""

    def __init__(self, s: CommonSettings) -> None:
        self.s = s
        self._samples: list[Sample] = []
        self._failing: dict[str, str] = {}
        self._supervisor: Supervisor | None = None
        self._flows = FlowWatch(s)  # one Redis connection for every poll's flow progress

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(self._samples)

    @staticmethod
    def _families(samples: list[Sample]) -> list[Metric]:
        families = {
            name: GaugeMetricFamily(name, help_, labels=list(labels))
            for name, (help_, labels) in SERIES.items()
        }
        for name, labels, value in samples:
            families[name].add_metric(list(labels), value)
        return list(families.values())

    def _guard(self, source: str, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """``(True, fn())``, or ``(False, None)`` with the failure counted and logged once."""
        try:
            value = fn()
        except Exception as e:
            POLL_ERRORS.labels(source).inc()
            message = f"{type(e).__name__}: {e}"
            if self._failing.get(source) != message:
                log.warning("exporter: %s unavailable: %s", source, message)
            self._failing[source] = message
            return False, None
        if self._failing.pop(source, None) is not None:
            log.info("exporter: %s is back", source)
        return True, value

    def poll(self) -> None:
        """Poll every source once; replace the samples served."""
        started = time.monotonic()
        try:
            self._samples = self._poll()
        except Exception:  # a bug must not end the exporter: keep serving the last poll
            log.exception("exporter: poll failed")
        POLL_SECONDS.set(time.monotonic() - started)
        LAST_POLL.set(time.time())

    def _poll(self) -> list[Sample]:
        s = self.s
        out: list[Sample] = []
        pg_ok, slot = self._guard("postgres", lambda: slot_state(s.postgres_url))
        kafka_ok, ends = self._guard(
            "kafka", lambda: end_offsets(s.kafka_bootstrap, s.events_topic)
        )
        redis_ok, _ = self._guard("redis", lambda: _ping(s.redis_url))
        _, state = self._guard("connect", lambda: _connector_state(s))
        for component, up in (
            ("postgres", pg_ok),
            ("redis", redis_ok),
            ("kafka", kafka_ok),
            ("connect", state is not None),
        ):
            out.append(("likes_component_up", (component,), float(up)))
        out.append(("likes_cdc_connector_up", (), float(state == "RUNNING")))
        if pg_ok:
            out.extend(_slot_samples(slot))
        if pg_ok and kafka_ok:
            out.extend(self._cdc_samples())
        if kafka_ok and redis_ok and ends is not None:
            out.extend(self._flow_lag_samples(ends))
        if kafka_ok:
            ok, depth = self._guard("dlq", lambda: dlq_depth(s.kafka_bootstrap, s.dlq_topic))
            if ok and depth is not None:
                out.append(("likes_dlq_messages", (), float(depth)))
        if redis_ok:
            out.extend(self._drift_samples())
        out.extend(self._start_samples())
        return out

    def _start_samples(self) -> list[Sample]:
        if self._supervisor is None:
            if not configured(self.s):
                return []
            self._supervisor = Supervisor(self.s, timeout=SUPERVISOR_TIMEOUT_S)
        ok, starts = self._guard("supervisor", self._supervisor.start_times)
        if not ok or starts is None:
            return []
        return [
            ("likes_component_start_time_seconds", (name,), at)
            for name, at in sorted(starts.items())
        ]

    def _flow_lag_samples(self, ends: dict[int, int]) -> list[Sample]:
        out: list[Sample] = []
        for flow in FLOW_NAMES:
            ok, lag = self._guard(f"flow-{flow}", partial(self._flows.lag, flow, ends))
            if ok and lag is not None:
                out.append(("likes_flow_lag_messages", (flow,), float(lag["lag"])))
        return out

    def _cdc_samples(self) -> list[Sample]:
        s = self.s
        ok, cdc = self._guard(
            "cdc", lambda: cdc_lag(s.postgres_url, s.kafka_bootstrap, s.events_topic)
        )
        lag = cdc.get("lag_seconds") if ok and cdc is not None else None
        return [] if lag is None else [("likes_cdc_lag_seconds", (), float(lag))]

    def _drift_samples(self) -> list[Sample]:
        ok, drift = self._guard("drift", lambda: last_drift(self.s.redis_url))
        if not ok or drift is None:
            return []
        out: list[Sample] = [
            ("likes_projection_drift_posts", (str(k),), float(v))
            for k, v in sorted(drift.items())
            if k != "at" and isinstance(v, int | float)
        ]
        at = drift.get("at")
        if isinstance(at, str):
            out.append(
                (
                    "likes_projection_drift_timestamp_seconds",
                    (),
                    datetime.fromisoformat(at).timestamp(),
                )
            )
        return out


def _slot_samples(slot: dict[str, Any] | None) -> list[Sample]:
    if slot is None:
        return [("likes_cdc_slot_present", (), 0.0)]
    out: list[Sample] = [
        ("likes_cdc_slot_present", (), 1.0),
        ("likes_cdc_slot_active", (), float(slot["active"])),
        ("likes_cdc_slot_lost", (), float(slot["wal_status"] == "lost")),
    ]
    if slot["retained_wal_bytes"] is not None:
        out.append(("likes_cdc_slot_retained_wal_bytes", (), float(slot["retained_wal_bytes"])))
    return out


def stall_limit(s: CommonSettings) -> float:
    """How long one poll may take before the exporter's watchdog ends the process."""
    return max(STALL_MIN_S, STALL_POLLS * s.exporter_interval_s)


def serve(s: CommonSettings, stall_s: float | None = None) -> None:
    """Serve /metrics and poll forever (``likes exporter``).

    A poll that never returns (a source without a timeout of its own) would leave the
    last poll's samples served for good, so no alert on them could fire: the watchdog
    (:mod:`core.watchdog`) ends the process when no poll has finished for ``stall_s``
    (default :func:`stall_limit`), and its supervisor restarts it."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    watchdog.arm(stall_s or stall_limit(s))
    exporter = Exporter(s)
    REGISTRY.register(exporter)
    start_http_server(s.exporter_port, addr=s.metrics_host)
    log.info(
        "exporter: /metrics on %s:%d, polling every %.1fs",
        s.metrics_host,
        s.exporter_port,
        s.exporter_interval_s,
    )
    while True:
        started = time.monotonic()
        exporter.poll()
        watchdog.beat()
        time.sleep(max(0.5, s.exporter_interval_s - (time.monotonic() - started)))
