"""Debian's Prometheus as the ``prometheus`` component of the local stack.

Before every start (``prepare``) the scrape config and the alert rules are rendered from
``stack/prometheus/*.tmpl`` into ``.local/prometheus/``: targets are the API's
``/metrics``, each flow process's port, the exporter and Prometheus itself, every one
labelled with its component name; the rules get ``slot_wal_alert_bytes`` from the
settings. Samples live in ``.local/prometheus/data``. Prometheus listens where
``prometheus_url`` points (127.0.0.1:59090 by default, contract section 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from core.settings import REPO_ROOT, CommonSettings

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


def flow_targets(s: CommonSettings, flows: Sequence[str]) -> dict[str, str]:
    """Component name to ``host:port`` of each flow process (process 0 of each flow:
    the port formula of ``flows.metrics.metrics_port``)."""
    host = _scrape_host(s)
    return {
        f"flow-{name}": f"{host}:{s.flow_metrics_port_base + i}" for i, name in enumerate(flows)
    }


def exporter_target(s: CommonSettings) -> str:
    """``host:port`` of the exporter's /metrics."""
    return f"{_scrape_host(s)}:{s.exporter_port}"


def jobs_target(s: CommonSettings) -> str:
    """``host:port`` of the jobs worker's /metrics."""
    return f"{_scrape_host(s)}:{s.jobs_port}"


def render_config(s: CommonSettings, flows: Sequence[str]) -> str:
    """prometheus.yml: every target of the stack."""
    blocks = [
        f'      - targets: ["{target}"]\n        labels:\n          component: {component}'
        for component, target in flow_targets(s, flows).items()
    ]
    return Template((TEMPLATES / "prometheus.yml.tmpl").read_text()).substitute(
        interval=INTERVAL,
        rules_file=str(rules_file(s).resolve()),
        api_scheme=urlsplit(s.api_url).scheme or "http",
        api_target=_hostport(s.api_url, 80),
        flow_targets="\n".join(blocks),
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


def prepare(s: CommonSettings, flows: Sequence[str]) -> None:
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
