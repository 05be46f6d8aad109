"""Metrics (contract section 7): what the processes count, what they serve, and what
Prometheus makes of it.

The unit tests run stages and flows in-process and read the default registry (counters
are global, so they compare values before and after). The integration tests drive likes
through the API and scrape the live stack: the API, each flow process and the exporter;
Prometheus's targets and rules; and an alert, by stopping ``flow-fanout`` until
ComponentDown fires (it is always started again, and ``likes stack up`` runs last).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
import yaml
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.records import CountUpdate
from core.settings import CommonSettings, FlowSettings
from devstack import prometheus
from devstack.components import by_name
from devstack.supervisor import Supervisor
from flows import counts, fanout
from flows.count_stage import CountStage
from flows.decode import FlowState, PartitionEvents
from flows.fanout_stages import DedupeStage
from flows.hot import HotDetector
from flows.metrics import HotFigures, metrics_port
from flows.partition_stage import PartitionStage
from flows.runner import FLOWS, instrument_sinks
from ops.exporter import Exporter
from ops.prometheus_api import targets
from ops.status import collect, warnings
from schemas.events import LikeEvent
from sinks.redis_counts import observe_freshness
from tests.conftest import auth, fresh_id, register_post
from tests.flows.helpers import T0_MS, event, to_messages, workload
from tests.waiting import alert_firing, wait_until

LIKES = str(Path(sys.executable).with_name("likes"))
T = TypeVar("T")
API_SERIES = {"likes_api_request_seconds", "likes_api_transitions_total"}
FLOW_SERIES = {
    "likes_flow_events_total",
    "likes_flow_dedupe_dropped_total",
    "likes_flow_dead_letters_total",
    "likes_flow_late_events_total",
    "likes_sink_write_seconds",
    "likes_sink_errors_total",
    "likes_sink_retries_total",
    "bytewax_kafka_consumer_lag",
}
COUNTS_SERIES = {"likes_freshness_seconds", "likes_hot_posts", "likes_hot_post_share"}
EXPORTER_SERIES = {
    "likes_cdc_lag_seconds",
    "likes_cdc_slot_retained_wal_bytes",
    "likes_cdc_connector_up",
    "likes_flow_lag_messages",
    "likes_projection_drift_posts",
    "likes_component_up",
    "likes_dlq_messages",
    "likes_component_start_time_seconds",
}
TARGETS = {"api", "exporter", "jobs", "prometheus", *(f"flow-{f}" for f in FLOWS)}


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ in-process units


def test_freshness_is_observed_for_each_count_made_visible() -> None:
    count, total = _value("likes_freshness_seconds_count"), _value("likes_freshness_seconds_sum")
    now_ms = int(time.time() * 1000)
    observe_freshness([CountUpdate(1, 1, 1, newest_ms=now_ms - 2000), CountUpdate(2, 1, 1)])
    assert _value("likes_freshness_seconds_count") == count + 1, "no event time: no sample"
    assert 2.0 <= _value("likes_freshness_seconds_sum") - total < 3.0


def test_count_stage_carries_event_time_and_hot_figures() -> None:
    figures = HotFigures()
    hot = HotDetector(window_ms=60_000, bucket_ms=5_000, threshold=5, cool_threshold=2)
    stage = CountStage(hot, check_ms=2_000, figures=figures)
    assert figures.totals() == (0, 0, 0.0)
    t = 1_800_000_000_000  # a bucket boundary
    out, _ = stage.on_batch([{7: (6, 6, t + 100, {t: 6}, False), 8: (2, 2, t + 50, {t: 2}, False)}])
    updates = [(u.post_id, u.count, u.newest_ms) for u in out if isinstance(u, CountUpdate)]
    assert updates == [(7, 6, t + 100), (8, 2, t + 50)]
    assert CountUpdate(7, 6, 6) == CountUpdate(7, 6, 6, newest_ms=t), "not part of the value"
    assert figures.totals() == (0, 0, 0.0), "figures move at hot checks only"
    stage.on_notify()
    assert figures.totals() == (1, 8, 0.75), "post 7 is hot and has 6 of the 8 likes"
    del stage
    assert figures.totals() is None, "a collected stage leaves no figures behind"


def _late_event() -> dict[str, Any]:
    """A like an hour before the workload's windows, on a new edge."""
    return event(post=1, user=10_000, version=1, ms=T0_MS - 3_600_000)


def test_counts_flow_counts_events_drops_dead_and_late_letters() -> None:
    msgs: list[Any] = to_messages(workload(300, posts=10, users=20, seed=5))
    late = to_messages([_late_event()])
    garbage = KafkaSourceMessage(key=b"k", value=b"{", topic="likes.events", partition=0, offset=9)
    dead: list[Any] = []
    sinks = counts.CountsSinks(
        TestingSink(dead), TestingSink([]), TestingSink([]), [TestingSink([])], []
    )
    instrument_sinks("counts", sinks)
    before = [
        _value(n, flow="counts")
        for n in (
            "likes_flow_events_total",
            "likes_flow_dedupe_dropped_total",
            "likes_flow_dead_letters_total",
        )
    ]
    late_before = _value("likes_flow_late_events_total")
    s = FlowSettings(count_shards=4, window_s=1, lateness_s=0)
    source = TestingSource([*msgs, *msgs[:40], garbage, *late], batch_size=25)
    run_main(counts.build_flow(s, sinks, source))
    assert _value("likes_flow_events_total", flow="counts") - before[0] == 300 + 40 + 1
    assert _value("likes_flow_dedupe_dropped_total", flow="counts") - before[1] == 40
    assert _value("likes_flow_dead_letters_total", flow="counts") - before[2] == 1 == len(dead)
    assert _value("likes_flow_late_events_total") - late_before == 1


def test_fanout_flow_counts_events_and_drops() -> None:
    msgs: list[Any] = to_messages(workload(200, posts=10, users=20, seed=6))
    events = _value("likes_flow_events_total", flow="fanout")
    dropped = _value("likes_flow_dedupe_dropped_total", flow="fanout")
    sinks = fanout.FanoutSinks(TestingSink([]), TestingSink([]), TestingSink([]))
    run_main(fanout.build_flow(FlowSettings(count_shards=4), sinks, TestingSource(msgs + msgs)))
    assert _value("likes_flow_events_total", flow="fanout") - events == 400
    assert _value("likes_flow_dedupe_dropped_total", flow="fanout") - dropped == 200


def test_exporter_survives_unreachable_stores() -> None:
    s = CommonSettings(
        postgres_url="postgresql://likes:likes@127.0.0.1:1/likes",
        redis_url="redis://127.0.0.1:1/0",
        kafka_bootstrap="127.0.0.1:1",
        connect_url="http://127.0.0.1:1",
    )
    exporter = Exporter(s)
    exporter.poll()
    samples = {
        (m.name, tuple(x.labels.values())): x.value for m in exporter.collect() for x in m.samples
    }
    assert samples[("likes_cdc_connector_up", ())] == 0
    for store in ("postgres", "redis", "kafka", "connect"):
        assert samples[("likes_component_up", (store,))] == 0, store
    assert ("likes_cdc_lag_seconds", ()) not in samples, "unknown is absent, not 0"


def test_status_warns_of_wal_once_per_condition() -> None:
    slot = {
        "present": True,
        "wal_status": "extended",
        "retained_wal_bytes": 5000,
        "alert_bytes": 4096,
    }
    report: dict[str, Any] = {"slot": slot, "alerts": []}
    (warning,) = warnings(report)
    assert "LIKES_SLOT_WAL_ALERT_BYTES" in warning
    report["alerts"] = [
        {"name": "ReplicationSlotWalHigh", "labels": {}, "summary": "4.9KiB of WAL retained"}
    ]
    assert warnings(report) == ["ALERT ReplicationSlotWalHigh: 4.9KiB of WAL retained"]
    assert warnings({"slot": {**slot, "present": False}, "alerts": []}) == [
        "the replication slot of the connector is missing"
    ]


# ------------------------------------------------------------------ the live stack


def _scrape(url: str) -> set[str]:
    """Family and sample names served at ``url``."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, url
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def _drive_likes(api: httpx.Client, s: CommonSettings, likes: int = 3) -> int:
    post = register_post(api, s)
    for _ in range(likes):
        r = api.post(f"/v1/posts/{post}/like", headers=auth(s, fresh_id()))
        assert r.status_code == 200, r.text
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    wait_until("the count in Redis", lambda: client.get(f"likes:count:{post}") == str(likes), 90)
    return post


def _flow_url(s: CommonSettings, flow: str) -> str:
    return f"http://127.0.0.1:{metrics_port(s.flow_metrics_port_base, FLOWS, flow, 0)}/metrics"


@pytest.mark.integration
def test_every_process_serves_its_series(api: httpx.Client, stack: CommonSettings) -> None:
    _drive_likes(api, stack)
    assert _scrape(f"{stack.api_url}/metrics") >= API_SERIES
    assert _scrape(_flow_url(stack, "counts")) >= FLOW_SERIES | COUNTS_SERIES
    assert _scrape(_flow_url(stack, "fanout")) >= FLOW_SERIES
    assert _scrape(_flow_url(stack, "analytics")) >= FLOW_SERIES
    exporter = f"http://127.0.0.1:{stack.exporter_port}/metrics"

    def exporter_series() -> set[str] | None:
        served = _scrape(exporter)
        return served if served >= EXPORTER_SERIES else None

    wait_until("every exporter series", exporter_series, 30)
    text = httpx.get(exporter, timeout=10).text
    assert "likes_cdc_connector_up 1.0" in text
    assert all(f'likes_flow_lag_messages{{flow="{f}"}}' in text for f in FLOWS)
    started = {
        s.labels["component"]: s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "likes_component_start_time_seconds"
        for s in fam.samples
    }
    programs = set(Supervisor(stack).programs())
    assert programs >= {"postgres", "redis", "kafka", "connect", "prometheus", "exporter"}
    assert set(started) == programs
    assert all(time.time() - 86_400 < at <= time.time() for at in started.values()), started
    counts_text = httpx.get(_flow_url(stack, "counts"), timeout=10).text
    assert 'likes_flow_events_total{flow="counts"} 0.0' not in counts_text
    assert "likes_freshness_seconds_count 0.0" not in counts_text


def _health(s: CommonSettings) -> dict[str, str]:
    return {t["component"]: t["health"] for t in targets(s.prometheus_url)}


@pytest.mark.integration
def test_prometheus_scrapes_every_target(stack: CommonSettings) -> None:
    def all_up() -> dict[str, str] | None:
        health = _health(stack)
        return health if all(health.get(c) == "up" for c in TARGETS) else None

    health = wait_until("every target up", all_up, 60)
    assert set(health) == TARGETS


@pytest.mark.integration
def test_wal_alert_uses_the_configured_threshold(stack: CommonSettings) -> None:
    rules = yaml.safe_load(prometheus.rules_file(stack).read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    want = f"likes_cdc_slot_retained_wal_bytes > {stack.slot_wal_alert_bytes}"
    assert exprs["ReplicationSlotWalHigh"] == want
    body = httpx.get(f"{stack.prometheus_url}/api/v1/rules", timeout=10).json()
    loaded = {r["name"]: r["query"] for g in body["data"]["groups"] for r in g["rules"]}
    metric, _, threshold = loaded["ReplicationSlotWalHigh"].partition(" > ")
    assert metric == "likes_cdc_slot_retained_wal_bytes"
    assert float(threshold) == stack.slot_wal_alert_bytes
    other = prometheus.render_rules(CommonSettings(slot_wal_alert_bytes=2048))
    assert "likes_cdc_slot_retained_wal_bytes > 2048\n" in other


@pytest.mark.integration
def test_component_down_fires_while_a_flow_is_stopped(stack: CommonSettings) -> None:
    sup = Supervisor(stack)
    flow = by_name(stack, "flow-fanout")
    try:
        assert sup.stop(flow.name), "flow-fanout was not running"
        alert = wait_until(
            "ComponentDown firing", lambda: alert_firing(stack, "ComponentDown", flow.name), 120
        )
        assert alert["severity"] == "critical"
        shown = collect(stack)["warnings"]
        assert any(w.startswith("ALERT ComponentDown (flow-fanout)") for w in shown), shown
    finally:
        sup.start(flow.name)
        wait_until("flow-fanout healthy", flow.healthy, 120)
        subprocess.run([LIKES, "stack", "up"], check=True, timeout=900, capture_output=True)
    wait_until("its target up", lambda: _health(stack).get(flow.name) == "up", 60)
    wait_until(
        "the alert resolved", lambda: alert_firing(stack, "ComponentDown", flow.name) is None, 60
    )


@pytest.mark.integration
def test_status_shows_alerts_and_dead_letters(stack: CommonSettings) -> None:
    done = subprocess.run(
        [LIKES, "status", "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    report = json.loads(done.stdout)
    keys = {"components", "healthy", "cdc", "flows", "drift", "hot_posts", "alerts", "dlq"}
    assert keys <= set(report)
    assert {"exporter", "prometheus"} <= set(report["components"])
    assert isinstance(report["alerts"], list) and "alerts_note" not in report
    assert report["dlq"]["messages"] >= 0
    human = subprocess.run([LIKES, "status"], capture_output=True, text=True, timeout=120)
    assert "components" in human.stdout and "flow counts lag" in human.stdout
    unreachable = collect(stack.model_copy(update={"prometheus_url": "http://127.0.0.1:1"}))
    assert unreachable["alerts"] == [] and "unreachable" in unreachable["alerts_note"]


def test_dedupe_stages_report_the_edges_their_snapshots_hold() -> None:
    def like(post: int, user: int, version: int) -> LikeEvent:
        return LikeEvent.model_validate(event(post, user, version, T0_MS))

    evs: list[LikeEvent | FlowState] = [like(5, 1, 1), like(5, 2, 1), like(5, 2, 2), like(6, 1, 1)]
    counting = PartitionStage(ttl_ms=60_000, window_ms=1000, lateness_ms=0, emit_ms=1000)
    counting.on_batch([PartitionEvents(7, evs)])
    counting.snapshot()
    assert _value("likes_flow_state_edges", flow="counts", partition="7") == 3
    fanning = DedupeStage(60_000)
    fanning.on_batch([PartitionEvents(3, evs[:2])])
    fanning.snapshot()
    assert _value("likes_flow_state_edges", flow="fanout", partition="3") == 2
