"""Which processes each component runs as, and where they listen, in either profile.

The single profile (default) runs one process per component. The cluster profile
(``LIKES_PROFILE=cluster``, contract section 1) runs the scale-out topology on this
machine: 3 Kafka brokers, 2 Kafka Connect workers in distributed mode, each dataflow as
a Bytewax cluster of 2 processes and 2 API processes sharing the API port. Members of
one component are named ``<component>-<i>`` (their PID files too).

Everything here is derived from the settings, so every process (the supervisor's
programs, ``likes status``, the tests) computes the same topology.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.settings import CLUSTER_BROKERS, CommonSettings

CONNECT_WORKERS = 2
FLOW_PROCESSES = 2
API_PROCESSES = 2


def _port(url: str) -> int:
    port = urlsplit(url if "//" in url else f"//{url}").port
    if port is None:
        raise ValueError(f"no port in {url!r}")
    return port


_MEMBER_SUFFIX = re.compile(r"-\d+$")


def component_of(member: str) -> str:
    """The component a member belongs to: ``kafka-0`` and ``kafka`` are ``kafka``,
    ``flow-counts-1`` and ``flow-counts`` are ``flow-counts`` (the naming rule above)."""
    return _MEMBER_SUFFIX.sub("", member)


def is_cluster(s: CommonSettings) -> bool:
    """True in the cluster profile."""
    return s.profile == "cluster"


@dataclass(frozen=True)
class Broker:
    """One KRaft node (broker and controller in one process)."""

    name: str  # kafka or kafka-<i>
    node_id: int
    port: int
    controller_port: int


def brokers(s: CommonSettings) -> list[Broker]:
    """The Kafka nodes: one in the single profile; 3 in the cluster, whose broker and
    controller ports step by 2 from the first bootstrap port and the controller port."""
    first = _port(s.kafka_bootstrap.split(",")[0])
    if not is_cluster(s):
        return [Broker("kafka", 1, first, s.kafka_controller_port)]
    return [
        Broker(f"kafka-{i}", i, first + 2 * i, s.kafka_controller_port + 2 * i)
        for i in range(CLUSTER_BROKERS)
    ]


def replication(s: CommonSettings) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of every topic."""
    return (3, 2) if is_cluster(s) else (1, 1)


@dataclass(frozen=True)
class ConnectWorker:
    """One Kafka Connect worker and its REST port."""

    name: str  # connect or connect-<i>
    host: str
    rest_port: int

    @property
    def url(self) -> str:
        """Its REST API."""
        return f"http://{self.host}:{self.rest_port}"


def connect_workers(s: CommonSettings) -> list[ConnectWorker]:
    """One standalone worker at ``connect_url``, or 2 distributed ones on its host (REST
    ports 2 apart from its port)."""
    first = _port(s.connect_url)
    host = urlsplit(s.connect_url).hostname or "127.0.0.1"
    if not is_cluster(s):
        return [ConnectWorker("connect", host, first)]
    return [ConnectWorker(f"connect-{i}", host, first + 2 * i) for i in range(CONNECT_WORKERS)]


@dataclass(frozen=True)
class FlowProcess:
    """One process of a dataflow: its Bytewax process id and cluster addresses (None
    when the flow is one process)."""

    name: str  # flow-<flow> or flow-<flow>-<i>
    flow: str
    process_id: int | None
    addresses: tuple[str, ...] | None


def flow_processes(s: CommonSettings, flows: tuple[str, ...], flow: str) -> list[FlowProcess]:
    """The processes of dataflow ``flow`` (``flows`` fixes its index, hence its ports)."""
    if not is_cluster(s):
        return [FlowProcess(f"flow-{flow}", flow, None, None)]
    base = s.flow_cluster_port_base + 10 * flows.index(flow)
    addresses = tuple(f"127.0.0.1:{base + p}" for p in range(FLOW_PROCESSES))
    return [FlowProcess(f"flow-{flow}-{p}", flow, p, addresses) for p in range(FLOW_PROCESSES)]


def metrics_port(base: int, flows: Sequence[str], name: str, process_id: int | None) -> int:
    """The port flow ``name``'s process ``process_id`` serves /metrics on: flow i of
    ``flows`` is ``base + i`` in process 0, and each further process adds ``len(flows)``
    (Prometheus scrapes the same ports)."""
    return base + flows.index(name) + len(flows) * (process_id or 0)


@dataclass(frozen=True)
class ApiProcess:
    """One API process; in the cluster profile it also listens on a port of its own
    (health and /metrics of that very process)."""

    name: str  # api or api-<i>
    index: int | None
    member_port: int | None

    @property
    def own_url(self) -> str | None:
        """Where only this process answers (None in the single profile)."""
        return None if self.member_port is None else f"http://127.0.0.1:{self.member_port}"


def api_processes(s: CommonSettings) -> list[ApiProcess]:
    """The API processes: in the single profile ``api_processes`` of them (one by
    default), in the cluster profile 2; several share the API port (SO_REUSEPORT)."""
    n = API_PROCESSES if is_cluster(s) else s.api_processes
    if n == 1 and not is_cluster(s):
        return [ApiProcess("api", None, None)]
    return [ApiProcess(f"api-{i}", i, s.api_member_port_base + i) for i in range(n)]
