"""The components of the local stack, in start order, each with its health check.

Component names are part of the contract: ``.local/run/<name>.pid``. ``jobs``
(``likes jobs-worker``) runs the erasure jobs the API accepts. The metrics
components come last: ``exporter`` (``likes exporter``: CDC, flow lag, drift, stores)
and ``prometheus`` (Debian's, scraping every other component; see
:mod:`devstack.prometheus`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import httpx
import redis

from core import topology
from core.settings import REPO_ROOT, CommonSettings
from devstack import java_stack, local_servers, process, prometheus
from schemas.cdc import SLOT_NAME
from schemas.migrate import apply_migrations

FLOW_NAMES: tuple[str, ...] = ("counts", "fanout", "analytics")  # as flows.runner.FLOWS
FLOW_HEARTBEAT_MAX_AGE_S = 10.0


@dataclass
class Component:
    """One supervised program: how to set it up, launch it, and tell that it is healthy.

    ``setup`` runs in ``make up`` before the first start (slow, once: jar downloads).
    ``prepare`` runs in the launcher before every start, including the supervisor's
    restarts after a crash (fast and idempotent: render configs, clear a dead server's
    leftovers). ``after_healthy`` runs in ``make up`` once the component is healthy
    (idempotent: migrations, topics).
    """

    name: str
    argv: Callable[[], list[str]]
    healthy: Callable[[], bool]
    setup: Callable[[], None] = lambda: None
    prepare: Callable[[], None] = lambda: None
    after_healthy: Callable[[], None] = lambda: None
    env: Callable[[], dict[str, str]] = lambda: {}
    user: str | None = None
    start_timeout: float = 120.0
    stop_signal: str = "TERM"
    stop_as_group: bool = False
    group: str | None = None  # members started together (a quorum, a Bytewax cluster)
    background: bool = False  # off the request path: runs at ``background_nice``


def _port(url: str) -> int:
    port = urlsplit(url if "//" in url else f"//{url}").port
    if port is None:
        raise ValueError(f"no port in {url!r}")
    return port


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _redis_ok(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _flow_ok(s: CommonSettings, name: str) -> bool:
    """The flow process recorded in its PID file (component ``name``) is the one
    refreshing the heartbeat."""
    from schemas.redis_keys import flow_heartbeat_key

    try:
        client = redis.Redis.from_url(s.redis_url, socket_timeout=1, decode_responses=True)
        beat = client.get(flow_heartbeat_key(name))
    except redis.RedisError:
        return False
    if beat is None:
        return False
    pid, _, at = str(beat).partition(" ")
    fresh = time.time() - float(at or 0) < FLOW_HEARTBEAT_MAX_AGE_S
    return fresh and process.read_pid(s.home / "run" / f"{name}.pid") == int(pid)


def _likes_bin() -> str:
    return str(Path(sys.executable).with_name("likes"))


class SlotLost(RuntimeError):
    """The replication slot Connect streamed from is gone: starting would skip events."""


def connect_offsets(s: CommonSettings) -> tuple[Path, Path]:
    """Connect's stored source offsets (the standalone worker's file), and the file naming
    the database they belong to (its system identifier)."""
    return s.home / "connect" / "offsets.dat", s.home / "connect" / "offsets.owner"


def _has_offsets(s: CommonSettings) -> bool:
    """Connect has stored a source position: in its file (standalone), or in the offsets
    topic of the distributed workers (cluster profile; any record at all)."""
    if not topology.is_cluster(s):
        return connect_offsets(s)[0].exists()
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "likes-devstack"})
    try:
        topic = consumer.list_topics(java_stack.OFFSETS_TOPIC, timeout=15).topics.get(
            java_stack.OFFSETS_TOPIC
        )
        if topic is None or topic.error is not None:
            return False
        ends = [
            consumer.get_watermark_offsets(TopicPartition(java_stack.OFFSETS_TOPIC, p), 15)[1]
            for p in topic.partitions
        ]
        return any(end > 0 for end in ends)
    finally:
        consumer.close()


def check_slot(s: CommonSettings) -> None:
    """Before Connect starts: with no replication slot, Debezium would create a new one
    at the current WAL position and silently skip every event committed since the old
    one was lost. That is refused (``SlotLost``, so the component fails loudly and
    ``likes status`` shows the slot missing) when Connect's offsets belong to this very
    database; only a new database (another system identifier, or no offsets) starts
    clean. ``likes cdc recover`` is the way back (README runbook)."""
    offsets, owner = connect_offsets(s)
    ident = local_servers.system_identifier(s.postgres_url)
    if not local_servers.slot_exists(s.postgres_url, SLOT_NAME):
        known = owner.read_text().strip() if owner.exists() else None
        if known == ident and _has_offsets(s):
            raise SlotLost(
                f"replication slot {SLOT_NAME} is missing, but Connect has streamed from "
                "this database: starting now would skip every event committed since the "
                "slot was lost. Refusing to start. Run `likes cdc recover` (README runbook)."
            )
        offsets.unlink(missing_ok=True)  # a new database: its WAL starts anew
    owner.parent.mkdir(parents=True, exist_ok=True)
    owner.write_text(ident + "\n")


def check_profile(s: CommonSettings) -> None:
    """The data under ``home`` belongs to one profile: the two have different Kafka
    clusters, Connect offsets and flow recovery stores, so starting the other profile on
    it would re-read or skip events. Refused with the way out."""
    marker = s.home / "profile"
    if marker.exists():
        owner: str | None = marker.read_text().strip()
    elif (s.home / "kafka" / "data").exists():  # data from before the marker existed
        owner = "single"
    else:
        owner = None
    if owner is not None and owner != s.profile:
        raise StackProfileError(
            f"{s.home} holds the data of the {owner!r} profile, not "
            f"{s.profile!r}: run `make down` with that profile, then `make clean` (deletes "
            f"the data) or set LIKES_HOME to another directory for this profile"
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(s.profile + "\n")


class StackProfileError(RuntimeError):
    """``make up`` with a profile other than the one the data belongs to."""


def build_components(s: CommonSettings) -> list[Component]:
    """Every component in start order; the members of a Kafka quorum or of a Bytewax
    cluster are consecutive and share a ``group`` (started together, then waited for)."""
    layout = java_stack.JavaStackLayout(repo=REPO_ROOT, cache=REPO_ROOT / ".cache", local=s.home)
    pg_root = s.home / "postgres"
    pg_url = urlsplit(s.postgres_url)

    def pg_after() -> None:
        local_servers.pg_bootstrap(pg_root, s.postgres_url)
        apply_migrations(s.postgres_url)

    comps = [
        Component(
            "postgres",
            lambda: local_servers.pg_command(pg_root),
            lambda: local_servers.pg_ready(pg_root, s.postgres_url),
            prepare=lambda: local_servers.pg_prepare(pg_root, pg_url.port or 5432),
            after_healthy=pg_after,
            user=local_servers.pg_user(),
            start_timeout=60,
            stop_signal="INT",  # fast shutdown: roll back open transactions, then exit
        ),
        Component(
            "redis",
            lambda: local_servers.redis_command(s.home / "redis", _port(s.redis_url)),
            lambda: _redis_ok(s.redis_url),
            start_timeout=30,
        ),
    ]
    comps.extend(_kafka_components(s, layout))
    comps.extend(_connect_components(s, layout, pg_url))
    comps.extend(_api_components(s))
    for name in FLOW_NAMES:
        comps.extend(_flow_components(s, name))
    comps.append(
        Component(
            "jobs",
            lambda: [_likes_bin(), "jobs-worker"],
            lambda: _http_ok(f"http://{prometheus.jobs_target(s)}/metrics"),
            start_timeout=30,
            background=True,
        )
    )
    comps.extend(_metrics_components(s))
    return comps


def _kafka_components(s: CommonSettings, layout: java_stack.JavaStackLayout) -> list[Component]:
    nodes = topology.brokers(s)
    replication, min_isr = topology.replication(s)
    voters = ",".join(f"{b.node_id}@127.0.0.1:{b.controller_port}" for b in nodes)

    def one(b: topology.Broker) -> Component:
        node = java_stack.KafkaNode(
            b.name, b.node_id, b.port, b.controller_port, voters, replication, min_isr
        )
        last = b == nodes[-1]  # topics need every replica's broker up
        return Component(
            b.name,
            lambda: java_stack.kafka_command(layout, b.name),
            lambda: _broker_ok(f"127.0.0.1:{b.port}", b.node_id),
            setup=lambda: java_stack.ensure_jars(layout),
            prepare=lambda: java_stack.kafka_prepare(layout, node),
            after_healthy=(
                (lambda: java_stack.create_topics(s.kafka_bootstrap, replication, min_isr))
                if last
                else (lambda: None)
            ),
            group="kafka",
        )

    return [one(b) for b in nodes]


def _broker_ok(bootstrap: str, node_id: int) -> bool:
    """The broker answers and is a live member of its cluster."""
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=2)
    except Exception:
        return False
    return node_id in meta.brokers


def _connect_components(
    s: CommonSettings, layout: java_stack.JavaStackLayout, pg_url: SplitResult
) -> list[Component]:
    workers = topology.connect_workers(s)
    distributed = topology.is_cluster(s)
    replication, _ = topology.replication(s)

    def env() -> dict[str, str]:
        return java_stack.connect_env(
            pg_host=pg_url.hostname or "127.0.0.1",
            pg_port=pg_url.port or 5432,
            pg_user=pg_url.username or "",
            pg_password=pg_url.password or "",
            pg_db=pg_url.path.lstrip("/"),
        )

    def one(w: topology.ConnectWorker) -> Component:
        def prepare() -> None:
            check_slot(s)
            java_stack.connect_prepare(
                layout,
                bootstrap=s.kafka_bootstrap,
                rest_port=w.rest_port,
                worker=w.name,
                distributed=distributed,
                replication=replication,
            )

        def register() -> None:
            java_stack.register_connector(layout, w.url)
            _wait(lambda: java_stack.connector_state(w.url) == "RUNNING", 120, "likes-outbox")

        if not distributed:
            healthy = lambda: java_stack.connector_state(w.url) == "RUNNING"  # noqa: E731
        else:
            healthy = lambda: java_stack.worker_ready(w.url)  # noqa: E731
        return Component(
            w.name,
            lambda: java_stack.connect_command(layout, w.name, distributed=distributed),
            healthy,
            setup=lambda: java_stack.ensure_jars(layout),
            prepare=prepare,
            env=env,
            after_healthy=register if distributed and w == workers[-1] else (lambda: None),
            background=True,
        )

    return [one(w) for w in workers]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.5)


def _api_components(s: CommonSettings) -> list[Component]:
    def one(p: topology.ApiProcess) -> Component:
        argv = [_likes_bin(), "api"]
        if p.index is not None:
            argv += ["--member", str(p.index)]
        own = p.own_url or s.api_url
        return Component(
            p.name,
            lambda: argv,
            lambda: _http_ok(f"{own}/readyz"),
            start_timeout=60,
            stop_as_group=True,  # uvicorn workers, when there are several
        )

    return [one(p) for p in topology.api_processes(s)]


def by_name(s: CommonSettings, name: str) -> Component:
    """The component called ``name``."""
    for comp in build_components(s):
        if comp.name == name:
            return comp
    raise KeyError(f"no component {name!r}")


def _metrics_components(s: CommonSettings) -> list[Component]:
    return [
        Component(
            "exporter",
            lambda: [_likes_bin(), "exporter"],
            lambda: _http_ok(f"http://{prometheus.exporter_target(s)}/metrics"),
            start_timeout=30,
            background=True,
        ),
        Component(
            "prometheus",
            lambda: prometheus.command(s),
            lambda: _http_ok(f"{s.prometheus_url.rstrip('/')}/-/ready"),
            prepare=lambda: prometheus.prepare(s, FLOW_NAMES),
            start_timeout=60,
            background=True,
        ),
    ]


def _flow_components(s: CommonSettings, name: str) -> list[Component]:
    """The processes of flow ``name``; those of one Bytewax cluster start together."""

    def one(p: topology.FlowProcess) -> Component:
        argv = [_likes_bin(), "flow", name]
        if p.process_id is not None and p.addresses is not None:
            argv += ["--process-id", str(p.process_id), "--addresses", ";".join(p.addresses)]
        return Component(
            p.name,
            lambda: argv,
            lambda: _flow_ok(s, p.name),
            start_timeout=60,
            group=f"flow-{name}",
            background=True,
        )

    return [one(p) for p in topology.flow_processes(s, FLOW_NAMES, name)]
