"""The two profiles' topologies, as every process computes them from the settings."""

from __future__ import annotations

import pytest

from core import topology
from core.settings import CommonSettings
from devstack import prometheus
from devstack.components import FLOW_NAMES, StackProfileError, build_components, check_profile


def test_single_profile_is_one_process_per_component() -> None:
    s = CommonSettings(profile="single")
    names = [c.name for c in build_components(s)]
    assert names[:6] == ["postgres", "redis", "kafka", "connect", "api", "flow-counts"]
    assert topology.replication(s) == (1, 1)
    assert s.kafka_bootstrap == "127.0.0.1:19092"


def test_single_profile_may_run_several_api_processes_on_the_one_port() -> None:
    s = CommonSettings(profile="single", api_processes=2)
    apis = topology.api_processes(s)
    assert [(a.name, a.index, a.member_port) for a in apis] == [
        ("api-0", 0, 18300),
        ("api-1", 1, 18301),
    ]
    names = [c.name for c in build_components(s)]
    assert "api" not in names and names[4:6] == ["api-0", "api-1"]
    # Prometheus scrapes each process on its own port, not the shared one
    assert prometheus.api_targets(s) == {"api-0": "127.0.0.1:18300", "api-1": "127.0.0.1:18301"}
    assert s.kafka_bootstrap == "127.0.0.1:19092", "still one broker"


def test_cluster_profile_members_and_ports() -> None:
    s = CommonSettings(profile="cluster")
    assert s.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    brokers = topology.brokers(s)
    assert [(b.name, b.node_id, b.port, b.controller_port) for b in brokers] == [
        ("kafka-0", 0, 19092, 19093),
        ("kafka-1", 1, 19094, 19095),
        ("kafka-2", 2, 19096, 19097),
    ]
    assert topology.replication(s) == (3, 2)
    assert [w.rest_port for w in topology.connect_workers(s)] == [18083, 18085]
    counts = topology.flow_processes(s, FLOW_NAMES, "counts")
    fanout = topology.flow_processes(s, FLOW_NAMES, "fanout")
    assert [p.name for p in counts] == ["flow-counts-0", "flow-counts-1"]
    assert counts[0].addresses == counts[1].addresses == ("127.0.0.1:19400", "127.0.0.1:19401")
    assert fanout[0].addresses == ("127.0.0.1:19410", "127.0.0.1:19411")
    apis = topology.api_processes(s)
    assert [(a.name, a.member_port) for a in apis] == [("api-0", 18300), ("api-1", 18301)]
    # every member's ports differ from every other's
    ports = [b.port for b in brokers] + [b.controller_port for b in brokers]
    ports += [w.rest_port for w in topology.connect_workers(s)]
    ports += [a.member_port or 0 for a in apis]
    for flow in FLOW_NAMES:
        for p in topology.flow_processes(s, FLOW_NAMES, flow):
            ports.append(
                topology.metrics_port(s.flow_metrics_port_base, FLOW_NAMES, flow, p.process_id)
            )
        ports += [
            int(a.rsplit(":", 1)[1])
            for a in topology.flow_processes(s, FLOW_NAMES, flow)[0].addresses or ()
        ]
    assert len(ports) == len(set(ports))


def test_cluster_components_and_scrape_targets() -> None:
    s = CommonSettings(profile="cluster")
    comps = build_components(s)
    groups = {c.name: c.group for c in comps}
    assert groups["kafka-0"] == groups["kafka-2"] == "kafka"  # a quorum starts together
    assert groups["flow-counts-0"] == groups["flow-counts-1"] == "flow-counts"
    assert groups["flow-counts-1"] != groups["flow-fanout-0"]
    argv = {c.name: c.argv() for c in comps}
    assert argv["flow-counts-1"][-4:] == [
        "--process-id",
        "1",
        "--addresses",
        "127.0.0.1:19400;127.0.0.1:19401",
    ]
    assert argv["api-1"][-2:] == ["--member", "1"]
    targets = prometheus.flow_targets(s, FLOW_NAMES) | prometheus.api_targets(s)
    assert targets["api-1"] == "127.0.0.1:18301"
    assert targets["flow-analytics-1"] == f"127.0.0.1:{s.flow_metrics_port_base + 5}"
    assert len(set(targets.values())) == len(targets) == 8


def test_a_home_belongs_to_one_profile(tmp_path: object) -> None:
    from pathlib import Path

    home = Path(str(tmp_path))
    check_profile(CommonSettings(profile="cluster", home=home))
    check_profile(CommonSettings(profile="cluster", home=home))  # idempotent
    with pytest.raises(StackProfileError, match="'cluster' profile"):
        check_profile(CommonSettings(profile="single", home=home))
    legacy = home / "legacy"
    (legacy / "kafka" / "data").mkdir(parents=True)  # single data from before the marker
    with pytest.raises(StackProfileError, match="'single' profile"):
        check_profile(CommonSettings(profile="cluster", home=legacy))


def test_every_member_maps_to_a_component_of_the_single_profile() -> None:
    single = {c.name for c in build_components(CommonSettings(profile="single"))}
    cluster = build_components(CommonSettings(profile="cluster"))
    assert {topology.component_of(c.name) for c in cluster} == single
    assert {topology.component_of(n) for n in single} == single
    assert topology.component_of("flow-counts-1") == "flow-counts"
