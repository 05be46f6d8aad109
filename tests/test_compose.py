"""Offline checks of docker-compose.yml, the Dockerfile and the connector JSON they share.

No Docker engine is needed. ``docker-compose config`` (Debian package ``docker-compose``,
installed by ``make setup``) validates the file and prints it normalized and interpolated;
the assertions run on that output. A missing binary or connector JSON fails, never skips.
The monitoring services are checked against the product: Prometheus runs the local
stack's alert template (rendered the same way) and scrapes every service on the ports
the settings give, ``promtool`` (Debian's ``prometheus``) accepts config and rules, and
the Grafana dashboard covers the contract's series and refers to no series the product
does not define.

``docker-compose.cluster.yml`` (the cluster profile, an override of docker-compose.yml)
is checked the same way on the merged configuration (``docker-compose -f
docker-compose.yml -f docker-compose.cluster.yml config``), against ``core.topology``:
3 KRaft nodes, 2 Connect workers, 2 processes per flow, 2 API processes behind one port.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

import flows.metrics
import ingest_api.metrics
import ops.exporter
import sinks.metrics
import sinks.redis_counts
from core import topology
from core.settings import CommonSettings
from devstack import prometheus
from devstack.java_stack import _TOPICS as KAFKA_TOPICS
from devstack.local_servers import SERVER_SETTINGS
from flows.runner import FLOWS as FLOW_NAMES

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
CLUSTER_FILE = REPO / "docker-compose.cluster.yml"
HAPROXY_CONFIG = REPO / "stack" / "compose" / "haproxy.cfg"
CLUSTER_PROMETHEUS_CONFIG = REPO / "stack" / "compose" / "prometheus.cluster.yml"
DOCKERFILE = REPO / "Dockerfile"
CONNECTOR_JSON = REPO / "stack" / "connect" / "likes-outbox-connector.json"
PROMETHEUS_CONFIG = REPO / "stack" / "prometheus" / "prometheus.compose.yml"
ALERTS_TEMPLATE = REPO / "stack" / "prometheus" / "alerts.yml.tmpl"
GRAFANA = REPO / "stack" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "likestream.json"

ONE_SHOT = {"migrate", "kafka-init", "connect-init"}
LONG_RUNNING = {
    "postgres",
    "redis",
    "kafka",
    "connect",
    "clickhouse",
    "api",
    "flow-counts",
    "flow-fanout",
    "flow-analytics",
    "exporter",
    "jobs",
    "prometheus",
    "grafana",
}
PROJECT_SERVICES = {
    "migrate",
    "api",
    "flow-counts",
    "flow-fanout",
    "flow-analytics",
    "exporter",
    "jobs",
}
METRICS_MODULES = (ingest_api.metrics, sinks.metrics, sinks.redis_counts, flows.metrics)
# Contract section 7 (the dashboard may only name defined series)
CONTRACT_SERIES = {
    "likes_api_request_seconds",
    "likes_api_transitions_total",
    "likes_api_viewer_cache_total",
    "likes_api_outbox_write_errors_total",
    "likes_cdc_lag_seconds",
    "likes_cdc_slot_retained_wal_bytes",
    "likes_cdc_connector_up",
    "likes_flow_events_total",
    "likes_flow_lag_messages",
    "likes_flow_dedupe_dropped_total",
    "likes_flow_dead_letters_total",
    "likes_flow_late_events_total",
    "likes_sink_write_seconds",
    "likes_sink_errors_total",
    "likes_sink_retries_total",
    "likes_freshness_seconds",
    "likes_projection_drift_posts",
    "likes_hot_posts",
    "likes_hot_post_share",
}
FLOWS = {"flow-counts", "flow-fanout", "flow-analytics"}
SHARED_ENV = {
    "LIKES_POSTGRES_URL": "postgresql://likes:likes@postgres:5432/likes",
    "LIKES_REDIS_URL": "redis://redis:6379/0",
    "LIKES_KAFKA_BOOTSTRAP": "kafka:9092",
    "LIKES_CLICKHOUSE_URL": "http://likes:likes@clickhouse:8123/likes",
}
START_ORDER = [
    ("migrate", "postgres", "service_healthy"),
    ("api", "migrate", "service_completed_successfully"),
    ("api", "redis", "service_healthy"),
    ("kafka-init", "kafka", "service_healthy"),
    ("connect", "kafka", "service_healthy"),
    ("connect-init", "connect", "service_healthy"),
    ("connect-init", "migrate", "service_completed_successfully"),
    ("connect-init", "kafka-init", "service_completed_successfully"),
    *[
        (flow, dep, cond)
        for flow in sorted(FLOWS)
        for dep, cond in [
            ("kafka-init", "service_completed_successfully"),
            ("migrate", "service_completed_successfully"),
            ("postgres", "service_healthy"),
            ("redis", "service_healthy"),
            ("clickhouse", "service_healthy"),
        ]
    ],
    ("exporter", "migrate", "service_completed_successfully"),
    ("exporter", "kafka-init", "service_completed_successfully"),
    ("exporter", "redis", "service_healthy"),
    ("grafana", "prometheus", "service_healthy"),
]


def _compose(
    *args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)
) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f FILE ... ARGS`` from the repository root (several files
    are merged as ``docker compose -f a -f b`` merges them)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose not found on PATH: install the Debian package docker-compose "
            "(scripts/bootstrap.sh does it in `make setup`)"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [binary, *(arg for f in files for arg in ("-f", str(f))), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The compose file as ``docker-compose config`` normalizes it."""
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Service name to its normalized definition."""
    svcs: dict[str, dict[str, Any]] = config["services"]
    return svcs


def _connector_text() -> str:
    """The checked-in connector JSON; its absence is a failure, not a skip."""
    if not CONNECTOR_JSON.is_file():
        pytest.fail(f"{CONNECTOR_JSON.relative_to(REPO)} is missing: connect-init registers it")
    return CONNECTOR_JSON.read_text()


def _unescape(value: str) -> str:
    """Undo compose's ``$$`` escaping, which ``config`` keeps in its output."""
    return value.replace("$$", "$")


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume, short or long syntax."""
    mounts: list[tuple[str, str, bool]] = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            mounts.append((vol["source"], vol["target"], bool(vol.get("read_only"))))
        else:
            parts = vol.split(":")
            mode = parts[2] if len(parts) > 2 else "rw"
            mounts.append((parts[0], parts[1], "ro" in mode.split(",")))
    return mounts


def _script(service: dict[str, Any]) -> str:
    """A one-shot's shell script, continuation lines joined, whitespace collapsed."""
    command = service["command"]
    text = command if isinstance(command, str) else " ".join(command)
    return " ".join(_unescape(text).replace("\\\n", " ").split())


def test_config_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_services_are_the_whole_system(services: dict[str, dict[str, Any]]) -> None:
    listed = _compose("config", "--services")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == ONE_SHOT | LONG_RUNNING
    assert set(services) == ONE_SHOT | LONG_RUNNING


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name, svc in services.items() if "image" not in svc and "build" not in svc]
    assert not missing


def test_public_images_have_pinned_tags(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if "build" in svc:
            continue
        image: str = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def _assert_long_running(services: dict[str, dict[str, Any]], names: Iterable[str]) -> None:
    """Each named service has a real healthcheck and is restarted unless stopped."""
    for name in names:
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"] and check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert services[name].get("restart") == "unless-stopped", name


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    _assert_long_running(services, LONG_RUNNING)


def test_one_shot_services_run_once(services: dict[str, dict[str, Any]]) -> None:
    for name in ONE_SHOT:
        assert services[name].get("restart") in {"no", None}, name
        assert "healthcheck" not in services[name], name


@pytest.mark.parametrize(("service", "dependency", "condition"), START_ORDER)
def test_start_order(
    services: dict[str, dict[str, Any]], service: str, dependency: str, condition: str
) -> None:
    depends_on = services[service].get("depends_on", {})
    assert dependency in depends_on, f"{service} does not wait for {dependency}"
    assert depends_on[dependency]["condition"] == condition


def test_postgres_runs_with_logical_wal(services: dict[str, dict[str, Any]]) -> None:
    pg = services["postgres"]
    command: list[str] = pg["command"]
    settings = {command[i + 1] for i, arg in enumerate(command[:-1]) if arg == "-c"}
    assert "wal_level=logical" in settings
    # what the local stack's server runs with (slot safety: max_slot_wal_keep_size)
    assert {f"{k}={v}" for k, v in SERVER_SETTINGS.items()} <= settings
    # The official image makes POSTGRES_USER a superuser: it has REPLICATION.
    assert pg["environment"]["POSTGRES_USER"] == "likes"
    assert "pg_isready" in pg["healthcheck"]["test"]


def test_connector_json_is_mounted_read_only(services: dict[str, dict[str, Any]]) -> None:
    init = services["connect-init"]
    target = init["environment"]["CONNECTOR_FILE"]
    mounts = {tgt: (Path(src), ro) for src, tgt, ro in _mounts(init)}
    assert target in mounts, f"{target} is not mounted into connect-init"
    source, read_only = mounts[target]
    assert source == CONNECTOR_JSON and read_only
    assert "$CONNECTOR_FILE" in _script(init)
    assert "PostgresConnector" not in COMPOSE_FILE.read_text(), "connector config copied inline"


def test_connector_json_is_checked_in(services: dict[str, dict[str, Any]]) -> None:
    connector = json.loads(_connector_text())
    assert connector["name"] == services["connect-init"]["environment"]["CONNECTOR_NAME"]
    assert isinstance(connector["config"], dict)


def test_connect_provides_every_env_the_connector_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    env: dict[str, str] = services["connect"]["environment"]
    assert env["CONNECT_CONFIG_PROVIDERS"] == "env"
    assert env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"].endswith(".EnvVarConfigProvider")
    pattern = env.get("CONNECT_CONFIG_PROVIDERS_ENV_PARAM_ALLOWLIST_PATTERN", ".*")
    allowed = re.compile(_unescape(pattern))
    referenced = set(re.findall(r"\$\{env:([A-Za-z0-9_]+)\}", _connector_text()))
    assert referenced, "the connector reads no ${env:...} variables"
    for var in sorted(referenced):
        assert var in env, f"connect does not set {var}"
        assert allowed.fullmatch(var), f"{var} is outside the env provider's allowlist"


def test_kafka_topics_are_created_explicitly(services: dict[str, dict[str, Any]]) -> None:
    """kafka-init creates the local stack's topics with the same partitions and configs."""
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    script = _script(services["kafka-init"])
    for topic, (partitions, config) in KAFKA_TOPICS.items():
        extra = "".join(f" --config {k}={v}" for k, v in config.items())
        create = f"--create --if-not-exists --topic {topic} --partitions {partitions}"
        assert f"{create} --replication-factor 1{extra}" in script, topic


def test_project_containers_share_settings(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in PROJECT_SERVICES}
    assert len(images) == 1, images
    for name in PROJECT_SERVICES:
        svc = services[name]
        assert Path(svc["build"]["context"]) == REPO, name
        assert svc["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
        env = svc["environment"]
        for key, value in SHARED_ENV.items():
            assert env.get(key) == value, f"{name}: {key}"
        assert env.get("LIKES_JWT_SECRET"), name
        assert svc["command"][0] == "likes", name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_flows_keep_recovery_on_their_own_volumes(
    config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    volumes_used = set()
    for name in FLOWS:
        svc = services[name]
        assert svc["environment"]["LIKES_RECOVERY_DIR"] == "/data/recovery", name
        recovery = [src for src, tgt, _ in _mounts(svc) if tgt == "/data/recovery"]
        assert len(recovery) == 1 and recovery[0] in config["volumes"], name
        volumes_used.add(recovery[0])
    assert len(volumes_used) == len(FLOWS)


def test_dockerfile_builds_from_the_lock_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"python:3\.11-slim", text)
    assert re.search(r"pip install \"?uv==", text)
    assert "uv sync --frozen --no-dev" in text
    for package in ("flows", "sinks", "schemas", "ingest_api", "ops"):
        assert re.search(rf"^COPY {package}/ ", text, re.M), package
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "likes" in re.findall(r"^ENTRYPOINT .*$", text, re.M)[-1]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Debian's ``promtool`` (package ``prometheus``, installed by ``make setup``)."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install the Debian package prometheus (make setup)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def _family_names(family: Metric) -> set[str]:
    """The sample names a metric family is queried by."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {family.name + s for s in suffixes.get(family.type, [""])} | {family.name}


def _product_series() -> set[str]:
    """Every series name the product's processes can expose."""
    families: list[Metric] = [
        *ops.exporter.Exporter(CommonSettings()).describe(),
        *flows.metrics.HOT_COLLECTOR.describe(),
    ]
    for module in METRICS_MODULES:
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                families.extend(value.describe())
    return {name for family in families for name in _family_names(family)}


def _likes_names(expr: str) -> set[str]:
    return set(re.findall(r"\blikes_[a-z0-9_]+", expr))


def _render_rules_like_compose(service: dict[str, Any], out: Path, threshold: str) -> str:
    """Run the Prometheus service's rendering command here, on the checked-in template."""
    render = _script(service).split(" exec ", 1)[0]
    mounts = {tgt: src for src, tgt, _ in _mounts(service)}
    render = render.replace(
        "/etc/prometheus/alerts.yml.tmpl", mounts["/etc/prometheus/alerts.yml.tmpl"]
    )
    render = render.replace("/rendered/alerts.yml", str(out))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LIKES_SLOT_WAL_ALERT_BYTES": threshold}
    subprocess.run(["/bin/sh", "-ec", render], env=env, check=True, timeout=30)
    return out.read_text()


def test_prometheus_runs_the_local_stacks_rules(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    prom = services["prometheus"]
    mounts = {tgt: (Path(src), ro) for src, tgt, ro in _mounts(prom)}
    assert mounts["/etc/prometheus/alerts.yml.tmpl"] == (ALERTS_TEMPLATE, True)
    assert mounts["/etc/prometheus/prometheus.yml"] == (PROMETHEUS_CONFIG, True)
    assert prom["environment"]["LIKES_SLOT_WAL_ALERT_BYTES"] == str(1 << 30)
    rendered = _render_rules_like_compose(prom, tmp_path / "alerts.yml", "12345")
    assert rendered == prometheus.render_rules(CommonSettings(slot_wal_alert_bytes=12345))
    assert "likes_cdc_slot_retained_wal_bytes > 12345" in rendered
    check = _promtool("check", "rules", str(tmp_path / "alerts.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = {r["alert"] for g in yaml.safe_load(rendered)["groups"] for r in g["rules"]}
    assert {"ComponentDown", "ReplicationSlotWalHigh", "ReplicationSlotMissing"} <= alerts
    assert {"ReplicationSlotInvalidated", "FlowLagGrowing", "ProjectionDrift"} <= alerts
    unknown = _likes_names(rendered) - _product_series()
    assert not unknown, f"alert rules use series nobody defines: {sorted(unknown)}"


def test_prometheus_scrapes_every_service(services: dict[str, dict[str, Any]]) -> None:
    prom = services["prometheus"]
    assert "127.0.0.1:59090:9090" in " ".join(
        f"{p.get('host_ip')}:{p.get('published')}:{p.get('target')}" if isinstance(p, dict) else p
        for p in prom["ports"]
    )
    assert "/-/ready" in " ".join(prom["healthcheck"]["test"])
    check = _promtool("check", "config", "--syntax-only", str(PROMETHEUS_CONFIG))
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["/rendered/alerts.yml"]
    assert "> /rendered/alerts.yml" in _script(prom)
    targets = {
        target: group["labels"]["component"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    s = CommonSettings()
    want = {
        "api:8000": "api",
        f"exporter:{s.exporter_port}": "exporter",
        f"jobs:{s.jobs_port}": "jobs",
    }
    base = s.flow_metrics_port_base
    want |= {
        f"flow-{name}:{flows.metrics.metrics_port(base, FLOW_NAMES, name, 0)}": f"flow-{name}"
        for name in FLOW_NAMES
    }
    assert {t: c for t, c in targets.items() if c != "prometheus"} == want
    for component in want.values():
        assert component in services, component
        if component != "api":
            env = services[component]["environment"]
            assert env["LIKES_METRICS_HOST"] == "0.0.0.0", component


def test_grafana_is_provisioned_with_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = {tgt: (Path(src), ro) for src, tgt, ro in _mounts(grafana)}
    assert mounts["/etc/grafana/provisioning"] == (GRAFANA / "provisioning", True)
    dashboards_dir, read_only = mounts["/etc/grafana/dashboards"]
    assert dashboards_dir == DASHBOARD.parent and read_only
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/likestream.yml").read_text())
    assert [p["options"]["path"] for p in providers["providers"]] == ["/etc/grafana/dashboards"]
    assert "/api/health" in " ".join(grafana["healthcheck"]["test"])


def test_dashboard_covers_the_contract_series_and_only_defined_ones() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert all(t["datasource"]["uid"] == "likes-prometheus" for p in panels for t in p["targets"])
    named = set().union(*(_likes_names(e) for e in exprs))
    defined = _product_series()
    assert not named - defined, f"the dashboard uses undefined series: {sorted(named - defined)}"
    assert defined >= CONTRACT_SERIES, sorted(CONTRACT_SERIES - defined)
    covered = {
        series
        for series in CONTRACT_SERIES
        if any(n == series or n.startswith(series + "_") for n in named)
    }
    assert covered == CONTRACT_SERIES, sorted(CONTRACT_SERIES - covered)


# ------------------------------------------------------------------ cluster profile
# docker-compose.cluster.yml over docker-compose.yml. Member 0 of Kafka, Connect and
# each flow keeps the default service's name (other services depend on it, and an
# override cannot remove a dependency); member i > 0 is `<service>-<i>`. The default
# `api` publishes the API port, which an override cannot unpublish: it is disabled
# (profile `single`) and the API processes api-0, api-1 sit behind api-proxy.

CLUSTER = CommonSettings.model_construct(profile="cluster")  # the defaults, no env read
CLUSTER_FILES = (COMPOSE_FILE, CLUSTER_FILE)
IMAGE_REF = re.compile(
    r"(?:[a-z0-9.-]+\.[a-z]{2,}(?::\d+)?/)?"  # registry (Docker Hub when absent)
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"  # repository
    r":v?\d+\.\d+[\w.-]*"  # a version tag, at least major.minor
)
KAFKA_PORT, CONTROLLER_PORT = 9092, 9093  # every node's listeners in its own container
PROXY = "api-proxy"
PROXY_HEALTH_PORT = 8404


def _member(service: str, index: int | None) -> str:
    """The compose service of member ``index`` of a default service."""
    return service if not index else f"{service}-{index}"


KAFKA_NODES = {b.node_id: _member("kafka", b.node_id) for b in topology.brokers(CLUSTER)}
CLUSTER_BOOTSTRAP = ",".join(f"{svc}:{KAFKA_PORT}" for svc in KAFKA_NODES.values())
CONNECT_WORKERS = [_member("connect", i) for i in range(len(topology.connect_workers(CLUSTER)))]
API_MEMBERS = {p.name: p for p in topology.api_processes(CLUSTER)}
FLOW_MEMBERS = {
    name: {
        _member(f"flow-{name}", p.process_id): p
        for p in topology.flow_processes(CLUSTER, FLOW_NAMES, name)
    }
    for name in FLOW_NAMES
}
CLUSTER_ADDED = (
    (set(KAFKA_NODES.values()) | set(CONNECT_WORKERS) | set(API_MEMBERS) | {PROXY})
    | {svc for members in FLOW_MEMBERS.values() for svc in members}
) - LONG_RUNNING
CLUSTER_LONG_RUNNING = (LONG_RUNNING - {"api"}) | CLUSTER_ADDED
CLUSTER_PROJECT = (
    (PROJECT_SERVICES - {"api"})
    | set(API_MEMBERS)
    | {svc for members in FLOW_MEMBERS.values() for svc in members}
)


@pytest.fixture(scope="module")
def cluster_config() -> dict[str, Any]:
    """The merged files as ``docker-compose config`` normalizes them."""
    result = _compose("config", files=CLUSTER_FILES)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def cluster(cluster_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services ``up`` starts: those of no profile."""
    return {
        name: svc for name, svc in cluster_config["services"].items() if not svc.get("profiles")
    }


def _published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, published port, target port) of each published port."""
    out: list[tuple[str, str, str]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), str(port["published"]), str(port["target"])))
        else:
            *host, target = port.split("/")[0].rsplit(":", 2)
            ip, published = host if len(host) == 2 else ("", host[0])
            out.append((ip, published, target))
    return out


def _script_lines(service: dict[str, Any]) -> list[str]:
    """A one-shot's shell script as commands: continuations joined, comments dropped."""
    command = service["command"]
    text = _unescape(command if isinstance(command, str) else "\n".join(command))
    lines = (line.strip() for line in text.replace("\\\n", " ").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _created_topics(service: dict[str, Any]) -> dict[str, tuple[str, int, int, dict[str, str]]]:
    """Topic to (bootstrap, partitions, replication factor, configs) of each
    ``kafka-topics.sh --create`` of a script (its shell variables expanded)."""
    lines = _script_lines(service)
    assigned = dict(re.findall(r'^(\w+)="([^"]*)"$', "\n".join(lines), re.M))
    topics: dict[str, tuple[str, int, int, dict[str, str]]] = {}
    for line in lines:
        expanded = re.sub(r"\$(\w+)", lambda m: assigned.get(m[1], m[0]), line)
        args = shlex.split(expanded)
        if "--create" not in args:
            continue
        value = {flag: args[i + 1] for i, flag in enumerate(args[:-1]) if flag.startswith("--")}
        configs = dict(
            args[i + 1].split("=", 1) for i, flag in enumerate(args[:-1]) if flag == "--config"
        )
        topics[value["--topic"]] = (
            value["--bootstrap-server"],
            int(value["--partitions"]),
            int(value["--replication-factor"]),
            configs,
        )
    return topics


def _haproxy_sections() -> dict[str, list[list[str]]]:
    """``section name`` to its statements (split on whitespace) of the proxy config."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for raw in HAPROXY_CONFIG.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if not raw[0].isspace():
            current = sections.setdefault(" ".join(words), [])
        else:
            current.append(words)
    return sections


def test_cluster_config_is_valid() -> None:
    result = _compose("config", "-q", files=CLUSTER_FILES)
    assert result.returncode == 0, result.stderr


def test_cluster_services_are_the_scaled_out_system(
    cluster_config: dict[str, Any], cluster: dict[str, dict[str, Any]]
) -> None:
    assert {
        "kafka-1",
        "kafka-2",
        "connect-1",
        "api-0",
        "api-1",
        PROXY,
        "flow-counts-1",
        "flow-fanout-1",
        "flow-analytics-1",
    } == CLUSTER_ADDED
    assert set(cluster) == ONE_SHOT | CLUSTER_LONG_RUNNING
    disabled = {n: s["profiles"] for n, s in cluster_config["services"].items() if n not in cluster}
    assert disabled == {"api": ["single"]}


def test_the_single_api_is_replaced_by_the_proxy(
    cluster_config: dict[str, Any], cluster: dict[str, dict[str, Any]]
) -> None:
    for name, svc in cluster.items():
        assert "api" not in svc.get("depends_on", {}), f"{name} waits for the disabled api"
    # Clients inside the stack keep reaching the API as http://api:8000.
    aliases = cluster[PROXY]["networks"]["default"]["aliases"]
    assert "api" in aliases
    assert cluster_config["services"]["api"]["ports"], "api no longer owns the port?"


def test_cluster_images_are_public_and_pinned(
    cluster: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    project_image = services["migrate"]["image"]
    for name, svc in cluster.items():
        if "build" in svc:
            assert svc["image"] == project_image, name
            continue
        image: str = svc["image"]
        assert IMAGE_REF.fullmatch(image), f"{name}: {image} is not a pinned public image"
    assert cluster[PROXY]["image"].startswith("haproxy:")


def test_cluster_services_have_healthchecks(cluster: dict[str, dict[str, Any]]) -> None:
    _assert_long_running(cluster, CLUSTER_LONG_RUNNING)
    for name in ONE_SHOT:
        assert cluster[name].get("restart") in {"no", None}, name
        assert "healthcheck" not in cluster[name], name


def test_cluster_start_order(
    cluster: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    for name, svc in cluster.items():
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in cluster, f"{name} waits for {dep}, which does not run"
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {dep}"
    # The default's order holds, and what waited for the one broker waits for all three.
    for name, dep, condition in START_ORDER:
        for member in API_MEMBERS if name == "api" else [name]:
            depends_on = cluster[member]["depends_on"]
            assert depends_on[dep]["condition"] == condition, f"{member} -> {dep}"
    for name, svc in services.items():
        if "kafka" in svc.get("depends_on", {}):
            for node in KAFKA_NODES.values():
                assert cluster[name]["depends_on"][node]["condition"] == "service_healthy", name

    # The other members of a component wait for what its first one waits for.
    def deps(name: str) -> dict[str, Any]:
        d: dict[str, Any] = cluster[name].get("depends_on", {})
        return d

    for members in FLOW_MEMBERS.values():
        first, *rest = members
        assert all(deps(other) == deps(first) for other in rest), first
    assert all(deps(w) == deps(CONNECT_WORKERS[0]) for w in CONNECT_WORKERS)
    assert all(deps(kafka) == deps("kafka-1") for kafka in KAFKA_NODES.values())
    for member in API_MEMBERS:
        assert deps(member) == services["api"]["depends_on"], member
    for worker in CONNECT_WORKERS:
        assert deps("connect-init")[worker]["condition"] == "service_healthy", worker
    assert set(deps(PROXY)) == set(API_MEMBERS)


def test_kafka_nodes_form_one_kraft_quorum(
    cluster_config: dict[str, Any],
    cluster: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
) -> None:
    voters = ",".join(f"{i}@{svc}:{CONTROLLER_PORT}" for i, svc in KAFKA_NODES.items())
    data: set[str] = set()
    envs = {}
    for node_id, name in KAFKA_NODES.items():
        svc = cluster[name]
        env = svc["environment"]
        assert svc["image"] == services["kafka"]["image"], name
        assert env["KAFKA_NODE_ID"] == str(node_id), name
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters, name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:{KAFKA_PORT}", name
        assert set(env) >= set(services["kafka"]["environment"]), name
        (source,) = [src for src, tgt, _ in _mounts(svc) if tgt == env["KAFKA_LOG_DIRS"]]
        assert source in cluster_config["volumes"], name
        data.add(source)
        envs[name] = {
            k: v for k, v in env.items() if k not in {"KAFKA_NODE_ID", "KAFKA_ADVERTISED_LISTENERS"}
        }
        assert "KAFKA_NODE_ID" in " ".join(svc["healthcheck"]["test"]), name
    assert sorted(KAFKA_NODES) == [0, 1, 2]  # distinct node ids (the env matches them)
    assert len(data) == len(KAFKA_NODES), "the nodes share a log dir"
    assert "kafka-data" not in data, "node 0 reuses the single node's log dir"
    first, *others = envs.values()
    assert all(env == first for env in others), "the nodes differ beyond id and listener"


def test_cluster_replication_is_3_with_2_in_sync(cluster: dict[str, dict[str, Any]]) -> None:
    replication, min_isr = topology.replication(CLUSTER)
    assert (replication, min_isr) == (3, 2)
    for name in KAFKA_NODES.values():
        env = cluster[name]["environment"]
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", name
        for key in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        ):
            assert env[key] == str(replication), f"{name}: {key}"
        for key in (
            "KAFKA_MIN_INSYNC_REPLICAS",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
        ):
            assert env[key] == str(min_isr), f"{name}: {key}"


def test_cluster_topics_are_the_local_stacks_replicated(
    cluster: dict[str, dict[str, Any]],
) -> None:
    init = cluster["kafka-init"]
    assert init["environment"]["LIKES_KAFKA_BOOTSTRAP"] == CLUSTER_BOOTSTRAP
    replication, min_isr = topology.replication(CLUSTER)
    want = {
        topic: (
            "$LIKES_KAFKA_BOOTSTRAP",
            partitions,
            replication,
            {**config, "min.insync.replicas": str(min_isr)},
        )
        for topic, (partitions, config) in KAFKA_TOPICS.items()
    }
    assert _created_topics(init) == want


def test_connect_workers_form_one_distributed_group(
    cluster: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    assert len(CONNECT_WORKERS) == 2
    base = services["connect"]["environment"]
    envs = {}
    for name in CONNECT_WORKERS:
        svc = cluster[name]
        env = svc["environment"]
        assert svc["image"] == services["connect"]["image"], name
        assert set(env) >= set(base), name
        assert env["BOOTSTRAP_SERVERS"] == CLUSTER_BOOTSTRAP, name
        assert env["ADVERTISED_HOST_NAME"] == name, name
        for key in ("GROUP_ID", "CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC"):
            assert env[key] == base[key], f"{name}: {key}"
        assert env["STATUS_STORAGE_TOPIC"] == base["STATUS_STORAGE_TOPIC"], name
        for store in ("CONFIG", "OFFSET", "STATUS"):
            assert env[f"CONNECT_{store}_STORAGE_REPLICATION_FACTOR"] == "3", f"{name}: {store}"
        assert env["CONNECT_PRODUCER_ACKS"] == "all", name
        envs[name] = {k: v for k, v in env.items() if k != "ADVERTISED_HOST_NAME"}
    first, *others = envs.values()
    assert all(env == first for env in others), "the workers differ beyond their name"
    assert len({first[k] for k in ("CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC")}) == 2
    # connect-init registers the checked-in connector on the group through a worker.
    init = cluster["connect-init"]
    assert init["environment"]["CONNECT_URL"] == f"http://{CONNECT_WORKERS[0]}:8083"
    assert _mounts(init) == _mounts(services["connect-init"])


@pytest.mark.parametrize("worker", CONNECT_WORKERS)
def test_connect_workers_provide_every_env_the_connector_reads(
    cluster: dict[str, dict[str, Any]], worker: str
) -> None:
    test_connect_provides_every_env_the_connector_reads({"connect": cluster[worker]})


@pytest.mark.parametrize("flow", FLOW_NAMES)
def test_flows_run_as_bytewax_clusters(
    cluster_config: dict[str, Any],
    cluster: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
    flow: str,
) -> None:
    members = FLOW_MEMBERS[flow]
    assert len(members) == 2
    addresses = ";".join(
        f"{name}:{(p.addresses or ())[p.process_id or 0].rsplit(':', 1)[1]}"
        for name, p in members.items()
    )
    recovery = set()
    mounts = []
    for name, p in members.items():
        svc = cluster[name]
        assert svc["command"] == [
            "likes",
            "flow",
            flow,
            "--process-id",
            str(p.process_id),
            "--addresses",
            addresses,
        ], name
        assert svc["environment"]["LIKES_RECOVERY_DIR"] == "/data/recovery", name
        assert svc["healthcheck"] == services[f"flow-{flow}"]["healthcheck"], name
        sources = [src for src, tgt, _ in _mounts(svc) if tgt == "/data/recovery"]
        assert len(sources) == 1 and sources[0] in cluster_config["volumes"], name
        recovery.add(sources[0])
        mounts.append({(src, tgt) for src, tgt, _ in _mounts(svc)})
    assert len(recovery) == 1, "the processes of a flow share its recovery store"
    (volume,) = recovery
    assert volume not in {src for src, _, _ in _mounts(services[f"flow-{flow}"])}
    for name, svc in cluster.items():
        if name not in members:
            assert volume not in {src for src, _, _ in _mounts(svc)}, name
    # Nothing else is shared: an embedded store (chDB) would be process 0's alone.
    assert {tgt for _, tgt in set.intersection(*mounts)} == {"/data/recovery"}


def test_api_processes_share_one_published_port(cluster: dict[str, dict[str, Any]]) -> None:
    assert len(API_MEMBERS) == 2
    for name, p in API_MEMBERS.items():
        svc = cluster[name]
        assert svc["command"] == ["likes", "api", "--member", str(p.index)], name
        assert svc["environment"]["LIKES_API_HOST"] == "0.0.0.0", name
        assert svc["environment"].get("LIKES_API_PORT", "8000") == "8000", name
        assert f"127.0.0.1:{p.member_port}/readyz" in " ".join(svc["healthcheck"]["test"]), name
        assert not svc.get("ports"), f"{name} publishes a port of its own"
    published = [(n, *port) for n, svc in cluster.items() for port in _published(svc)]
    hosts = [(ip, pub) for _, ip, pub, _ in published]
    assert len(hosts) == len(set(hosts)), published
    assert all(ip == "127.0.0.1" for _, ip, _, _ in published), published
    assert [(n, pub, tgt) for n, _, pub, tgt in published if pub == "8000"] == [
        (PROXY, "8000", "8000")
    ]
    mounts = {tgt: (Path(src), ro) for src, tgt, ro in _mounts(cluster[PROXY])}
    assert mounts["/usr/local/etc/haproxy/haproxy.cfg"] == (HAPROXY_CONFIG, True)
    assert str(PROXY_HEALTH_PORT) in " ".join(cluster[PROXY]["healthcheck"]["test"])


def test_proxy_balances_over_the_api_processes() -> None:
    sections = _haproxy_sections()
    frontends = {name: stmts for name, stmts in sections.items() if name.startswith("frontend ")}
    binds = {s[1]: name for name, stmts in frontends.items() for s in stmts if s[0] == "bind"}
    assert set(binds) == {":8000", f":{PROXY_HEALTH_PORT}"}
    api_front = frontends[binds[":8000"]]
    (backend_name,) = [s[1] for s in api_front if s[0] == "default_backend"]
    backend = sections[f"backend {backend_name}"]
    assert ["option", "httpchk", "GET", "/readyz"] in backend
    servers = {}
    for stmt in backend:
        if stmt[0] == "server":
            host, port = stmt[2].rsplit(":", 1)
            check_port = stmt[stmt.index("port") + 1] if "port" in stmt else port
            servers[stmt[1]] = (host, int(port), int(check_port))
    assert servers == {name: (name, 8000, p.member_port) for name, p in API_MEMBERS.items()}
    default_server = next(s for s in backend if s[:1] == ["default-server"])
    assert "check" in default_server and "resolvers" in default_server
    (resolvers,) = [n for n in sections if n.startswith("resolvers ")]
    assert ["nameserver", "dns", "127.0.0.11:53"] in sections[resolvers]
    health = " ".join(" ".join(s) for s in frontends[binds[f":{PROXY_HEALTH_PORT}"]])
    assert f"nbsrv({backend_name})" in health


def test_cluster_project_containers_share_settings(
    cluster: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    project_image = services["migrate"]["image"]
    project = {n for n, svc in cluster.items() if svc.get("image") == project_image}
    assert project == CLUSTER_PROJECT
    base = services["migrate"]["environment"]
    for name in project:
        svc = cluster[name]
        assert Path(svc["build"]["context"]) == REPO, name
        env = svc["environment"]
        assert env["LIKES_PROFILE"] == "cluster", name
        assert env["LIKES_KAFKA_BOOTSTRAP"] == CLUSTER_BOOTSTRAP, name
        for key, value in base.items():
            if key != "LIKES_KAFKA_BOOTSTRAP":
                assert env.get(key) == value, f"{name}: {key}"
        assert svc["command"][0] == "likes", name


def test_cluster_prometheus_scrapes_every_member(cluster: dict[str, dict[str, Any]]) -> None:
    prom = cluster["prometheus"]
    mounts = {tgt: (Path(src), ro) for src, tgt, ro in _mounts(prom)}
    assert mounts["/etc/prometheus/prometheus.yml"] == (CLUSTER_PROMETHEUS_CONFIG, True)
    assert mounts["/etc/prometheus/alerts.yml.tmpl"] == (ALERTS_TEMPLATE, True)
    check = _promtool("check", "config", "--syntax-only", str(CLUSTER_PROMETHEUS_CONFIG))
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(CLUSTER_PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["/rendered/alerts.yml"]
    targets = {
        target: group["labels"]["component"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    service_of = {p.name: svc for members in FLOW_MEMBERS.values() for svc, p in members.items()}
    service_of |= {name: name for name in API_MEMBERS}
    local = prometheus.api_targets(CLUSTER) | prometheus.flow_targets(CLUSTER, FLOW_NAMES)
    want = {
        f"{service_of[component]}:{target.rsplit(':', 1)[1]}": component
        for component, target in local.items()
    }
    want |= {f"exporter:{CLUSTER.exporter_port}": "exporter", f"jobs:{CLUSTER.jobs_port}": "jobs"}
    assert {t: c for t, c in targets.items() if c != "prometheus"} == want
    for target, component in want.items():
        service = target.rsplit(":", 1)[0]
        assert service in cluster, target
        if component not in API_MEMBERS:
            assert cluster[service]["environment"]["LIKES_METRICS_HOST"] == "0.0.0.0", service
