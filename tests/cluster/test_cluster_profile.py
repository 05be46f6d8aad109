"""The cluster profile (contract section 1, issue 10): 3 KRaft brokers, distributed
Connect with 2 workers, each dataflow a Bytewax cluster of 2 processes, 2 API processes
on one port; and ``kill -9`` of any one member under a live workload, with nothing but
the supervisor restarting it, loses no acknowledged like and applies none twice
(section 8: every projection equals the edge store afterwards).

The module stops the default stack, runs the cluster profile in a home of its own
(``.local/cluster-test``, fresh each run) and brings the default stack back afterwards.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from core import topology
from core.settings import REPO_ROOT, CommonSettings
from devstack import process
from devstack import stack as stack_ops
from devstack.components import FLOW_NAMES, build_components
from ops.status import collect
from tests.e2e.pipeline import acknowledged_mismatches, converge, drive_during, new_posts
from tests.faults.kill import RESTART_WITHIN_S, kill_and_wait

pytestmark = pytest.mark.e2e

HOME = REPO_ROOT / ".local" / "cluster-test"


@pytest.fixture(scope="module")
def cluster(settings: CommonSettings) -> Iterator[CommonSettings]:
    """The cluster profile up and healthy; the default stack again afterwards."""
    stack_ops.down(settings)
    shutil.rmtree(HOME, ignore_errors=True)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("LIKES_PROFILE", "cluster")  # read by every process the supervisor runs
            env.setenv("LIKES_HOME", str(HOME))
            s = CommonSettings()
            try:
                stack_ops.up(s)
                yield s
            finally:
                stack_ops.down(s)
    finally:
        # Even when the cluster never came up: every later test needs the default stack.
        stack_ops.up(settings)


def _quorum_leader(s: CommonSettings) -> int:
    """The active KRaft controller, as a live node's quorum state records it."""
    for broker in topology.brokers(s):
        state = s.home / broker.name / "data" / "__cluster_metadata-0" / "quorum-state"
        try:
            leader = int(json.loads(state.read_text())["leaderId"])
        except (OSError, ValueError, KeyError):
            continue
        if leader >= 0:
            return leader
    raise AssertionError("no KRaft quorum leader recorded")


def _task_worker(s: CommonSettings) -> str:
    """The Connect worker running the Debezium task."""
    for worker in topology.connect_workers(s):
        try:
            status = httpx.get(f"{worker.url}/connectors/likes-outbox/status", timeout=3).json()
        except (httpx.HTTPError, ValueError):
            continue
        port = int(status["tasks"][0]["worker_id"].rsplit(":", 1)[1])
        return next(w.name for w in topology.connect_workers(s) if w.rest_port == port)
    raise AssertionError("no Connect worker answers")


def test_the_topology_is_the_contracts(cluster: CommonSettings) -> None:
    s = cluster
    names = [c.name for c in build_components(s)]
    expected = {"kafka-0", "kafka-1", "kafka-2", "connect-0", "connect-1", "api-0", "api-1"}
    expected |= {f"flow-{f}-{p}" for f in FLOW_NAMES for p in (0, 1)}
    assert expected <= set(names)
    assert not {"kafka", "connect", "api", "flow-counts"} & set(names)
    # replicas of just-created topics and first scrapes may take a moment after `up`
    report = _eventually(collect, s, ok=_settled, timeout=60)
    assert report["healthy"], {n: c for n, c in report["components"].items() if not c["healthy"]}
    assert report["kafka"]["brokers"] == [0, 1, 2]
    assert report["kafka"]["under_replicated_partitions"] == 0, report["kafka"]
    pids = {n: process.live_pid(stack_ops.pid_file(s, n)) for n in expected}
    assert all(pids.values()) and len(set(pids.values())) == len(pids), pids

    # topics replicated 3 with min.insync.replicas 2, Connect's own ones included
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for name in (s.events_topic, s.dlq_topic, s.hot_topic, "likes-connect-offsets"):
        assert all(len(p.replicas) == 3 for p in topics[name].partitions.values()), name
    for name in (s.events_topic, s.dlq_topic, s.hot_topic):
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        config = admin.describe_configs([res])[res].result()
        assert config["min.insync.replicas"].value == "2", name

    # Connect: distributed, the two workers in one group, producing with acks=all
    for worker in topology.connect_workers(s):
        props = (s.home / worker.name / "worker.properties").read_text()
        assert "group.id=likes-connect" in props and "producer.acks=all" in props
        assert httpx.get(f"{worker.url}/connectors", timeout=5).json() == ["likes-outbox"]

    # two API processes behind the one port: each answers on its own port too, and
    # requests to the shared port (each on a new connection) reach both
    members = topology.api_processes(s)
    before = {m.name: _readyz_served(m) for m in members}
    for _ in range(100):
        with httpx.Client(base_url=s.api_url, timeout=5) as fresh:
            assert fresh.get("/readyz").status_code == 200
    served = {m.name: _readyz_served(m) - before[m.name] for m in members}
    assert all(n > 0 for n in served.values()), served
    assert sum(served.values()) >= 100, served

    # Prometheus scrapes every member (each target is up once its first scrape is done)
    scraped = {"api-0", "api-1"} | {f"flow-{f}-{p}" for f in FLOW_NAMES for p in (0, 1)}
    up = _eventually(_scraped_up, s, ok=lambda got: scraped <= got, timeout=60)
    assert scraped <= up, scraped - up


T = TypeVar("T")


def _eventually(
    read: Callable[[CommonSettings], T],
    s: CommonSettings,
    *,
    ok: Callable[[T], bool],
    timeout: float,
) -> T:
    """``read(s)`` until ``ok`` holds or ``timeout`` seconds pass; the last reading."""
    deadline = time.monotonic() + timeout
    got = read(s)
    while not ok(got) and time.monotonic() < deadline:
        time.sleep(2)
        got = read(s)
    return got


def _settled(report: dict[str, Any]) -> bool:
    kafka = report.get("kafka") or {}
    return bool(report["healthy"]) and kafka.get("under_replicated_partitions") == 0


def _scraped_up(s: CommonSettings) -> set[str]:
    targets = httpx.get(f"{s.prometheus_url}/api/v1/targets", timeout=5).json()["data"]
    return {t["labels"]["component"] for t in targets["activeTargets"] if t["health"] == "up"}


def _readyz_served(member: topology.ApiProcess) -> float:
    """How many /readyz requests this very API process has answered (its own /metrics)."""
    text = httpx.get(f"{member.own_url}/metrics", timeout=5).text
    line = 'likes_api_request_seconds_count{method="GET",route="/readyz",status="200"}'
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def test_any_one_member_killed_under_load(cluster: CommonSettings) -> None:
    s = cluster
    posts = new_posts(s, 150)
    took: dict[str, float] = {}

    def killer() -> None:
        leader = _quorum_leader(s)
        follower = next(b for b in topology.brokers(s) if b.node_id != leader)
        took[follower.name] = kill_and_wait(s, follower.name)
        leader_name = f"kafka-{_quorum_leader(s)}"  # the active controller now
        took[leader_name] = kill_and_wait(s, leader_name)
        holder = _task_worker(s)
        took[holder] = kill_and_wait(s, holder)
        for name in ("flow-counts-1", "flow-analytics-0", "flow-fanout-1", "api-0"):
            took[name] = kill_and_wait(s, name)

    result = drive_during(s, posts, 8_000, killer)
    assert len(took) == 7, took
    assert all(sec < RESTART_WITHIN_S for sec in took.values()), took
    assert result.acked > 4_000
    wrong = acknowledged_mismatches(s, posts, result)
    assert not wrong, f"{len(wrong)} acknowledged states differ from the edge store"
    report = converge(s, posts, timeout=300)
    assert report.clean, report.summary()
    figures = {
        "acked": result.acked,
        "acked_per_s": round(result.acked / max(result.seconds, 1e-9)),
        "restarted_s": took,
    }
    (s.home / "kill-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert collect(s)["kafka"]["under_replicated_partitions"] == 0


def test_cluster_home_refuses_the_other_profile(cluster: CommonSettings) -> None:
    from devstack.components import StackProfileError, check_profile

    single = CommonSettings(profile="single", home=cluster.home)
    with pytest.raises(StackProfileError, match="cluster"):
        check_profile(single)
