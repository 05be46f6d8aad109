"""Kafka (KRaft) and Kafka Connect with Debezium, run from Maven Central jars.

This module prepares what the JVM processes of the local stack need and says
how to start them; it does not start, watch or stop anything (``devstack.stack``
and supervisord do):

* :func:`ensure_jars` resolves the broker classpath, the Connect worker
  classpath and the Debezium PostgreSQL plugin with Maven
  (``stack/java/*/pom.xml``) into ``.cache/jars``; a marker keyed by a hash of
  the pom makes later calls skip Maven entirely.
* :func:`kafka_prepare` / :func:`kafka_command` render
  ``stack/kafka/server.properties.tmpl`` into ``.local/<node>`` (``kafka``, or
  ``kafka-<i>`` in the cluster profile) and format the KRaft storage once; each node
  runs in the foreground and logs to ``.local/<node>/logs/server.log``.
* :func:`connect_prepare` / :func:`connect_command` / :func:`connect_env` do the same
  for a Connect worker: standalone, running the ``likes-outbox`` connector
  (``stack/connect/likes-outbox-connector.json``), which publishes every row inserted
  into ``like_outbox`` to ``likes.events``; or distributed (cluster profile), where
  :func:`register_connector` puts the same connector config through the REST API.
* :func:`create_topics` and :func:`connector_state` talk to the running
  services.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

import httpx
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from schemas.cdc import CONNECTOR_NAME as _CONNECTOR_NAME

_HOUR_MS = 60 * 60 * 1000
_DAY_MS = 24 * _HOUR_MS
# name -> (partitions, topic configs). The Debezium heartbeat topic must exist:
# Connect commits a source offset (and Debezium then confirms the LSN to the
# replication slot) only for records it actually wrote, so with an idle outbox
# the heartbeat records are what lets the slot, and so the retained WAL, move.
_TOPICS: dict[str, tuple[int, dict[str, str]]] = {
    "likes.events": (12, {"retention.ms": str(7 * _DAY_MS)}),
    "likes.events.dlq": (3, {"retention.ms": str(7 * _DAY_MS)}),
    "likes.hot_posts": (3, {"retention.ms": str(7 * _DAY_MS)}),
    # internal: the counts flow's hot-episode changes for the analytics flow
    "likes.hot_episodes": (3, {"retention.ms": str(7 * _DAY_MS)}),
    "__debezium-heartbeat.likes_cdc": (
        1,
        {"retention.ms": str(_DAY_MS), "segment.ms": str(_HOUR_MS)},
    ),
}
_TOPIC_DEFAULTS = {"cleanup.policy": "delete"}

_JVM_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
_KAFKA_MAIN = "kafka.Kafka"
_STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
_CONNECT_MAIN = "org.apache.kafka.connect.cli.ConnectStandalone"
_CONNECT_DISTRIBUTED_MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"
OFFSETS_TOPIC = "likes-connect-offsets"  # distributed Connect (worker-distributed.properties)
_CONNECTOR_FILE = Path("stack/connect/likes-outbox-connector.json")


@dataclass(frozen=True)
class JavaStackLayout:
    """Where the repository, the jar/Maven cache and the runtime data live."""

    repo: Path  # /work/main
    cache: Path  # repo/.cache
    local: Path  # repo/.local   (runtime data; e.g. .local/kafka, .local/connect)


@dataclass(frozen=True)
class _JarSet:
    """One Maven dependency set copied into one directory under .cache/jars."""

    pom: str  # relative to the repo
    profile: str | None
    dest: str  # relative to .cache/jars


_KAFKA_JARS = _JarSet("stack/java/kafka/pom.xml", None, "kafka")
_CONNECT_JARS = _JarSet("stack/java/connect/pom.xml", "worker", "connect/lib")
_PLUGIN_JARS = _JarSet(
    "stack/java/connect/pom.xml", "plugin", "connect/plugins/debezium-connector-postgres"
)
_MARKER = ".resolved"


# --------------------------------------------------------------------- jars


def ensure_jars(layout: JavaStackLayout) -> None:
    """Resolve every jar set with Maven unless its marker matches its pom."""
    root = layout.cache / "jars"
    root.mkdir(parents=True, exist_ok=True)
    sets = (_KAFKA_JARS, _CONNECT_JARS, _PLUGIN_JARS)
    if all(_is_current(layout, s) for s in sets):
        return
    with _file_lock(root / ".lock"):
        for jar_set in sets:
            if not _is_current(layout, jar_set):
                _resolve(layout, jar_set)


def _jar_key(layout: JavaStackLayout, jar_set: _JarSet) -> str:
    digest = hashlib.sha256((layout.repo / jar_set.pom).read_bytes())
    digest.update(f"\0{jar_set.profile}\0{jar_set.dest}".encode())
    return digest.hexdigest()


def _is_current(layout: JavaStackLayout, jar_set: _JarSet) -> bool:
    marker = layout.cache / "jars" / jar_set.dest / _MARKER
    try:
        return marker.read_text().strip() == _jar_key(layout, jar_set)
    except FileNotFoundError:
        return False


def _resolve(layout: JavaStackLayout, jar_set: _JarSet) -> None:
    """Copy a dependency set into a scratch dir, then move it into place."""
    root = layout.cache / "jars"
    dest = root / jar_set.dest
    scratch = root / f".tmp-{jar_set.dest.replace('/', '_')}"
    shutil.rmtree(scratch, ignore_errors=True)
    command = [
        "mvn", "-B", "-q",
        "-f", str(layout.repo / jar_set.pom),
        f"-Dmaven.repo.local={layout.cache / 'm2'}",
        f"-Djars.dir={scratch}",
        *(["-P", jar_set.profile] if jar_set.profile else []),
        "dependency:copy-dependencies",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not any(scratch.glob("*.jar")):
        output = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(f"Maven could not resolve {jar_set.pom} {jar_set.profile}:\n{output}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(dest)
    (dest / _MARKER).write_text(_jar_key(layout, jar_set) + "\n")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise Maven runs of concurrent callers (e.g. two `make` targets)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -------------------------------------------------------------------- kafka


def _kafka_dir(layout: JavaStackLayout, node: str) -> Path:
    return layout.local / node


@dataclass(frozen=True)
class KafkaNode:
    """What one KRaft node's config needs: its name (``kafka`` or ``kafka-<i>``, also
    its directory under ``.local``), id, ports, the quorum and the replication."""

    name: str
    node_id: int
    broker_port: int
    controller_port: int
    voters: str  # controller.quorum.voters: id@host:port,...
    replication: int = 1
    min_isr: int = 1


def kafka_prepare(layout: JavaStackLayout, node: KafkaNode) -> None:
    """Render .local/<node>/server.properties; format the KRaft storage once (every node
    of a cluster with the same cluster id)."""
    ensure_jars(layout)
    kafka_dir = _kafka_dir(layout, node.name)
    data_dir = kafka_dir / "data"
    for sub in ("logs", "tmp"):
        (kafka_dir / sub).mkdir(parents=True, exist_ok=True)
    config = kafka_dir / "server.properties"
    _render(
        layout.repo / "stack/kafka/server.properties.tmpl",
        config,
        node_id=str(node.node_id),
        voters=node.voters,
        broker_port=str(node.broker_port),
        controller_port=str(node.controller_port),
        log_dir=str(data_dir),
        replication=str(node.replication),
        min_isr=str(node.min_isr),
    )
    if (data_dir / "meta.properties").exists():
        return
    # a single node keeps its id in its own dir (as before); a cluster shares one
    id_dir = kafka_dir if node.name == "kafka" else layout.local / "kafka-cluster"
    command = [
        *_java(layout, _KAFKA_JARS, "stack/kafka/log4j2.yaml", kafka_dir / "logs"),
        _STORAGE_TOOL_MAIN, "format", "--cluster-id", _cluster_id(id_dir),
        "--config", str(config), "--ignore-formatted",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kafka storage format failed:\n{done.stdout}{done.stderr}")


def _cluster_id(id_dir: Path) -> str:
    """The cluster id kept in <id_dir>/cluster.id (created on first use)."""
    path = id_dir / "cluster.id"
    id_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(id_dir / ".lock"):  # the nodes of a cluster are prepared at once
        if path.exists():
            return path.read_text().strip()
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's Uuid: never starts with "-"
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        path.write_text(cluster_id + "\n")
        return cluster_id


def kafka_command(layout: JavaStackLayout, node: str = "kafka") -> list[str]:
    """The java argv running one broker+controller in the foreground."""
    kafka_dir = _kafka_dir(layout, node)
    return [
        *_java(layout, _KAFKA_JARS, "stack/kafka/log4j2.yaml", kafka_dir / "logs"),
        _KAFKA_MAIN,
        str(kafka_dir / "server.properties"),
    ]


# ------------------------------------------------------------------ connect


def _connect_dir(layout: JavaStackLayout, worker: str) -> Path:
    return layout.local / worker


def connect_prepare(
    layout: JavaStackLayout,
    *,
    bootstrap: str,
    rest_port: int,
    worker: str = "connect",
    distributed: bool = False,
    replication: int = 1,
) -> None:
    """Render .local/<worker>/worker.properties: standalone (offsets in that dir) or
    distributed (offsets, configs and status in replicated topics)."""
    ensure_jars(layout)
    connect_dir = _connect_dir(layout, worker)
    for sub in ("logs", "tmp"):
        (connect_dir / sub).mkdir(parents=True, exist_ok=True)
    plugin_path = str((layout.cache / "jars" / _PLUGIN_JARS.dest).parent)
    if distributed:
        _render(
            layout.repo / "stack/connect/worker-distributed.properties.tmpl",
            connect_dir / "worker.properties",
            bootstrap=bootstrap,
            rest_port=str(rest_port),
            plugin_path=plugin_path,
            replication=str(replication),
        )
        return
    _render(
        layout.repo / "stack/connect/worker.properties.tmpl",
        connect_dir / "worker.properties",
        bootstrap=bootstrap,
        rest_port=str(rest_port),
        offsets_file=str(connect_dir / "offsets.dat"),
        plugin_path=plugin_path,
    )


def connect_command(
    layout: JavaStackLayout, worker: str = "connect", *, distributed: bool = False
) -> list[str]:
    """The java argv of a Connect worker: standalone with the connector config, or
    distributed (the connector is registered through the REST API)."""
    connect_dir = _connect_dir(layout, worker)
    java = _java(layout, _CONNECT_JARS, "stack/connect/log4j2.yaml", connect_dir / "logs")
    if distributed:
        return [*java, _CONNECT_DISTRIBUTED_MAIN, str(connect_dir / "worker.properties")]
    return [
        *java,
        _CONNECT_MAIN,
        str(connect_dir / "worker.properties"),
        str(layout.repo / _CONNECTOR_FILE),
    ]


def register_connector(layout: JavaStackLayout, rest_url: str) -> None:
    """Create or update the likes-outbox connector of a distributed Connect cluster from
    the checked-in JSON (``PUT /connectors/<name>/config``: idempotent)."""
    spec = json.loads((layout.repo / _CONNECTOR_FILE).read_text())
    url = f"{rest_url.rstrip('/')}/connectors/{spec['name']}/config"
    for attempt in Retrying(
        stop=stop_after_delay(60), wait=wait_fixed(1), retry=retry_if_exception_type(_Busy)
    ):
        with attempt:
            response = httpx.put(url, json=spec["config"], timeout=30.0)
            if response.status_code == httpx.codes.CONFLICT:  # rebalancing: try again
                raise _Busy(response.text)
            response.raise_for_status()


class _Busy(RuntimeError):
    """Connect answered 409: the group is rebalancing."""


def worker_ready(rest_url: str) -> bool:
    """The distributed worker has joined its group and read the config topic."""
    try:
        return httpx.get(f"{rest_url.rstrip('/')}/connectors", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def connect_env(
    *, pg_host: str, pg_port: int, pg_user: str, pg_password: str, pg_db: str
) -> dict[str, str]:
    """Variables the connector config reads through Kafka's env provider."""
    return {
        "LIKES_PG_HOST": pg_host,
        "LIKES_PG_PORT": str(pg_port),
        "LIKES_PG_USER": pg_user,
        "LIKES_PG_PASSWORD": pg_password,
        "LIKES_PG_DB": pg_db,
    }


def _java(layout: JavaStackLayout, jars: _JarSet, log_config: str, log_dir: Path) -> list[str]:
    """java, JVM options and classpath; scratch files (e.g. the native libs
    that lz4/zstd/snappy unpack) go to <component dir>/tmp, not /tmp, so
    that a kill -9 leaves nothing behind outside .local."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    return [
        java,
        *_JVM_OPTS,
        f"-Djava.io.tmpdir={log_dir.parent / 'tmp'}",
        f"-Dlog4j2.configurationFile={layout.repo / log_config}",
        f"-Dkafka.logs.dir={log_dir}",
        "-cp",
        str(layout.cache / "jars" / jars.dest / "*"),
    ]


def _render(template: Path, target: Path, **values: str) -> None:
    """Fill a string.Template file; replace the target atomically."""
    text = Template(template.read_text()).substitute(values)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + ".tmp")
    scratch.write_text(text)
    scratch.replace(target)


# ------------------------------------------------------------ live services


def create_topics(bootstrap: str, replication: int = 1, min_isr: int = 1) -> None:
    """Create the likestream topics that do not exist yet (idempotent)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=15).topics)
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication,
                 config={**_TOPIC_DEFAULTS, "min.insync.replicas": str(min_isr), **config})
        for name, (partitions, config) in _TOPICS.items()
        if name not in existing
    ]  # fmt: skip
    if not missing:
        return
    futures = admin.create_topics(missing, operation_timeout=30, request_timeout=30)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def connector_state(rest_url: str) -> str | None:
    """State of the likes-outbox connector from Connect's REST API.

    "RUNNING" only when the connector and all its tasks run; otherwise the
    first other state ("FAILED", "UNASSIGNED", "PAUSED", ...; "MISSING" when
    Connect does not know the connector yet). None when unreachable.
    """
    url = f"{rest_url.rstrip('/')}/connectors/{_CONNECTOR_NAME}/status"
    try:
        response = httpx.get(url, timeout=3.0)
    except httpx.HTTPError:
        return None
    if response.status_code == httpx.codes.NOT_FOUND:
        return "MISSING"
    if response.status_code != httpx.codes.OK:
        return f"HTTP_{response.status_code}"
    status = response.json()
    state = str(status["connector"]["state"])
    tasks = [str(task["state"]) for task in status.get("tasks", [])]
    if state != "RUNNING":
        return state
    if not tasks:
        return "UNASSIGNED"
    return next((task for task in tasks if task != "RUNNING"), "RUNNING")
