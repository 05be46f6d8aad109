"""Debian's Prometheus as the ``prometheus`` component of the local stack.

Before every start (``prepare``) the scrape config and the alert rules are rendered from
``stack/prometheus/*.tmpl`` into ``.local/prometheus/``: targets are the API's
``/metrics``, each flow process's port, the exporter and Prometheus itself, every one
labelled with its component name; the rules get ``slot_wal_alert_bytes`` from the
settings. Samples live in ``.local/prometheus/data``. Prometheus listens where
``prometheus_url`` points (127.0.0.1:59090 by default, contract section 7).
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from core import topology
from core.settings import REPO_ROOT, CommonSettings
from core.topology import metrics_port

BINARY = "/usr/bin/prometheus"
TEMPLATES = REPO_ROOT / "stack" / "prometheus"
INTERVAL = "5s"
RETENTION = "7d"


def config_file(s: CommonSettings) -> Path:
    """The rendered scrape config."""
    return s.home / "prometheus" / "prometheus.yml"


def rules_file(s: CommonSettings) -> Path:
    """The rendered alert rules."""
    return s.home / "prometheus" / "alerts.yml"


def _hostport(url: str, default_port: int) -> str:
    parts = urlsplit(url if "//" in url else f"//{url}")
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"


def listen_address(s: CommonSettings) -> str:
    """``host:port`` of ``prometheus_url``."""
    return _hostport(s.prometheus_url, 9090)


def _scrape_host(s: CommonSettings) -> str:
    """Where a local scrape reaches what binds ``metrics_host``."""
    return "127.0.0.1" if s.metrics_host in ("", "0.0.0.0", "::") else s.metrics_host


def flow_targets(s: CommonSettings, flows: tuple[str, ...]) -> dict[str, str]:
    """Component name to ``host:port`` of each flow process."""
    host = _scrape_host(s)
    return {
        p.name: f"{host}:{metrics_port(s.flow_metrics_port_base, flows, name, p.process_id)}"
        for name in flows
        for p in topology.flow_processes(s, flows, name)
    }


def api_targets(s: CommonSettings) -> dict[str, str]:
    """Component name to ``host:port`` of each API process (in the cluster profile the
    port only that process listens on, so each is scraped on its own)."""
    return {p.name: _hostport(p.own_url or s.api_url, 80) for p in topology.api_processes(s)}


def exporter_target(s: CommonSettings) -> str:
    """``host:port`` of the exporter's /metrics."""
    return f"{_scrape_host(s)}:{s.exporter_port}"


def jobs_target(s: CommonSettings) -> str:
    """``host:port`` of the jobs worker's /metrics."""
    return f"{_scrape_host(s)}:{s.jobs_port}"


def _blocks(targets: dict[str, str]) -> str:
    return "\n".join(
        f'      - targets: ["{target}"]\n        labels:\n          component: {component}'
        for component, target in targets.items()
    )


def render_config(s: CommonSettings, flows: tuple[str, ...]) -> str:
    """prometheus.yml: every target of the stack."""
    return Template((TEMPLATES / "prometheus.yml.tmpl").read_text()).substitute(
        interval=INTERVAL,
        rules_file=str(rules_file(s).resolve()),
        api_scheme=urlsplit(s.api_url).scheme or "http",
        api_targets=_blocks(api_targets(s)),
        flow_targets=_blocks(flow_targets(s, flows)),
        exporter_target=exporter_target(s),
        jobs_target=jobs_target(s),
        prometheus_target=listen_address(s),
    )


def render_rules(s: CommonSettings) -> str:
    """alerts.yml with the configured WAL threshold."""
    return Template((TEMPLATES / "alerts.yml.tmpl").read_text()).substitute(
        slot_wal_alert_bytes=str(s.slot_wal_alert_bytes)
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    scratch.replace(path)


def prepare(s: CommonSettings, flows: tuple[str, ...]) -> None:
    """Render the config and the rules (idempotent; before every start)."""
    _write(rules_file(s), render_rules(s))
    _write(config_file(s), render_config(s, flows))
    (s.home / "prometheus" / "data").mkdir(parents=True, exist_ok=True)


def command(s: CommonSettings) -> list[str]:
    """The Prometheus server on the rendered config."""
    root = (s.home / "prometheus").resolve()
    return [
        BINARY,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={listen_address(s)}",
        "--log.level=warn",
    ]
