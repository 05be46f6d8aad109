"""Offline checks of docker-compose.yml, the Dockerfile and the connector JSON they share.

No Docker engine is needed. ``docker-compose config`` (Debian package ``docker-compose``,
installed by ``make setup``) validates the file and prints it normalized and interpolated;
the assertions run on that output. A missing binary or connector JSON fails, never skips.
The monitoring services are checked against the product: Prometheus runs the local
stack's alert template (rendered the same way) and scrapes every service on the ports
the settings give, ``promtool`` (Debian's ``prometheus``) accepts config and rules, and
the Grafana dashboard covers the contract's series and refers to no series the product
does not define.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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
from core.settings import CommonSettings
from devstack import prometheus
from flows.runner import FLOWS as FLOW_NAMES

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
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


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f docker-compose.yml ARGS`` from the repository root."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose not found on PATH: install the Debian package docker-compose "
            "(scripts/bootstrap.sh does it in `make setup`)"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), *args],
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


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"] and check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert services[name].get("restart") == "unless-stopped", name


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
    assert any(s.startswith("max_replication_slots=") for s in settings)
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
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    script = _script(services["kafka-init"])
    week = "retention.ms=604800000"
    for topic, partitions, extra in [
        ("likes.events", 12, f" --config {week}"),
        ("likes.events.dlq", 3, f" --config {week}"),
        ("likes.hot_posts", 3, ""),
        ("likes.hot_episodes", 3, f" --config {week}"),
    ]:
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
