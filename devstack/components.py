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
from urllib.parse import urlsplit

import httpx
import redis

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


def _kafka_ok(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=2)
        return True
    except Exception:
        return False


def _flow_ok(s: CommonSettings, name: str) -> bool:
    """The flow process recorded in its PID file is the one refreshing the heartbeat."""
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
    return fresh and process.read_pid(s.home / "run" / f"flow-{name}.pid") == int(pid)


def _likes_bin() -> str:
    return str(Path(sys.executable).with_name("likes"))


class SlotLost(RuntimeError):
    """The replication slot Connect streamed from is gone: starting would skip events."""


def connect_offsets(s: CommonSettings) -> tuple[Path, Path]:
    """Connect's stored source offsets, and the file naming the database they belong to
    (its system identifier)."""
    return s.home / "connect" / "offsets.dat", s.home / "connect" / "offsets.owner"


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
        if offsets.exists() and known == ident:
            raise SlotLost(
                f"replication slot {SLOT_NAME} is missing, but Connect has streamed from "
                "this database: starting now would skip every event committed since the "
                "slot was lost. Refusing to start. Run `likes cdc recover` (README runbook)."
            )
        offsets.unlink(missing_ok=True)  # a new database: its WAL starts anew
    owner.parent.mkdir(parents=True, exist_ok=True)
    owner.write_text(ident + "\n")


def build_components(s: CommonSettings) -> list[Component]:
    """Every component in start order."""
    layout = java_stack.JavaStackLayout(repo=REPO_ROOT, cache=REPO_ROOT / ".cache", local=s.home)
    pg_root = s.home / "postgres"
    pg_url = urlsplit(s.postgres_url)
    broker_port = _port(s.kafka_bootstrap)

    def pg_after() -> None:
        local_servers.pg_bootstrap(pg_root, s.postgres_url)
        apply_migrations(s.postgres_url)

    def jars() -> None:
        java_stack.ensure_jars(layout)

    def kafka_prepare() -> None:
        java_stack.kafka_prepare(
            layout, broker_port=broker_port, controller_port=s.kafka_controller_port
        )

    def connect_prepare() -> None:
        check_slot(s)
        java_stack.connect_prepare(
            layout, bootstrap=s.kafka_bootstrap, rest_port=_port(s.connect_url)
        )

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
        Component(
            "kafka",
            lambda: java_stack.kafka_command(layout),
            lambda: _kafka_ok(s.kafka_bootstrap),
            setup=jars,
            prepare=kafka_prepare,
            after_healthy=lambda: java_stack.create_topics(s.kafka_bootstrap),
        ),
        Component(
            "connect",
            lambda: java_stack.connect_command(layout),
            lambda: java_stack.connector_state(s.connect_url) == "RUNNING",
            setup=jars,
            prepare=connect_prepare,
            env=lambda: java_stack.connect_env(
                pg_host=pg_url.hostname or "127.0.0.1",
                pg_port=pg_url.port or 5432,
                pg_user=pg_url.username or "",
                pg_password=pg_url.password or "",
                pg_db=pg_url.path.lstrip("/"),
            ),
        ),
        Component(
            "api",
            lambda: [_likes_bin(), "api"],
            lambda: _http_ok(f"{s.api_url}/readyz"),
            start_timeout=60,
            stop_as_group=True,  # uvicorn workers, when there are several
        ),
    ]
    comps.extend(_flow_component(s, name) for name in FLOW_NAMES)
    comps.append(
        Component(
            "jobs",
            lambda: [_likes_bin(), "jobs-worker"],
            lambda: _http_ok(f"http://{prometheus.jobs_target(s)}/metrics"),
            start_timeout=30,
        )
    )
    comps.extend(_metrics_components(s))
    return comps


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
        ),
        Component(
            "prometheus",
            lambda: prometheus.command(s),
            lambda: _http_ok(f"{s.prometheus_url.rstrip('/')}/-/ready"),
            prepare=lambda: prometheus.prepare(s, FLOW_NAMES),
            start_timeout=60,
        ),
    ]


def _flow_component(s: CommonSettings, name: str) -> Component:
    return Component(
        f"flow-{name}",
        lambda: [_likes_bin(), "flow", name],
        lambda: _flow_ok(s, name),
        start_timeout=60,
    )
