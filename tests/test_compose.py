"""Offline checks of docker-compose.yml, the Dockerfile and the connector JSON they share.

No Docker engine is needed. ``docker-compose config`` (Debian package ``docker-compose``,
installed by ``make setup``) validates the file and prints it normalized and interpolated;
the assertions run on that output. A missing binary or connector JSON fails, never skips.
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

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
CONNECTOR_JSON = REPO / "stack" / "connect" / "likes-outbox-connector.json"

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
}
PROJECT_SERVICES = {"migrate", "api", "flow-counts", "flow-fanout"}
FLOWS = {"flow-counts", "flow-fanout"}
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
