"""Reading the stack's Prometheus over its HTTP API (``/api/v1/...``): alerts, targets."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

import httpx


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer, or answered with an error."""


def _get(base_url: str, path: str, timeout: float) -> Any:
    try:
        response = httpx.get(f"{base_url.rstrip('/')}{path}", timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as e:
        raise PrometheusUnavailable(f"{base_url}: {type(e).__name__}: {e}") from e
    if body.get("status") != "success":
        raise PrometheusUnavailable(f"{base_url}{path}: {body.get('error', body)}")
    return body["data"]


def alerts(base_url: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Every active alert (``pending`` or ``firing``): name, state, labels, annotations,
    since when, and its value."""
    data = _get(base_url, "/api/v1/alerts", timeout)
    return [
        {
            "name": a["labels"].get("alertname", ""),
            "state": a.get("state", ""),
            "severity": a["labels"].get("severity", ""),
            "labels": {k: v for k, v in a["labels"].items() if k != "alertname"},
            "summary": a.get("annotations", {}).get("summary", ""),
            "active_at": a.get("activeAt"),
            "value": a.get("value"),
        }
        for a in cast(list[dict[str, Any]], data.get("alerts", []))
    ]


def firing_alerts(base_url: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The alerts that fire now (past their ``for:``), by name."""
    return sorted(
        (a for a in alerts(base_url, timeout) if a["state"] == "firing"),
        key=lambda a: (a["name"], sorted(a["labels"].items())),
    )


def targets(base_url: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Every active scrape target: its labels, ``health`` (up, down, unknown), last error."""
    data = _get(base_url, "/api/v1/targets?state=active", timeout)
    return [
        {
            "job": t.get("labels", {}).get("job", ""),
            "component": t.get("labels", {}).get("component", ""),
            "url": t.get("scrapeUrl", ""),
            "health": t.get("health", ""),
            "error": t.get("lastError", ""),
        }
        for t in cast(list[dict[str, Any]], data.get("activeTargets", []))
    ]


def query(base_url: str, promql: str, at: float, timeout: float = 5.0) -> list[dict[str, Any]]:
    """An instant query evaluated at ``at`` (epoch seconds): each sample's labels and
    value (NaN, e.g. a quantile of nothing observed, comes back as ``nan``)."""
    data = _get(
        base_url, "/api/v1/query?" + urlencode({"query": promql, "time": f"{at:.3f}"}), timeout
    )
    return [
        {"labels": r.get("metric", {}), "value": float(r["value"][1])}
        for r in cast(list[dict[str, Any]], data.get("result", []))
    ]
