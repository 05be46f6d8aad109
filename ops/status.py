"""``likes status``: component health, CDC lag, flow lag, drift, hot posts, and alerts.

The figures are the ones Prometheus scrapes (:mod:`ops.exporter` computes them the same
way), read directly so that status works without Prometheus; the firing alerts come
from Prometheus (``alerts`` is empty, with ``alerts_note`` saying why, when it cannot be
reached). Warnings repeat what needs an operator: every firing alert, and the
replication slot's state checked here as well (retained WAL above
``slot_wal_alert_bytes``, slot missing or invalidated) unless its alert already fires.
"""

from __future__ import annotations

import io
import json
import shutil
from typing import Any, cast

import redis
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from core.settings import CommonSettings
from devstack import process, stack
from devstack.components import build_components
from ops.cdc import cdc_lag
from ops.exporter import dlq_depth, slot_state
from ops.kafka_health import kafka_report
from ops.prometheus_api import PrometheusUnavailable, firing_alerts
from schemas.redis_keys import HOT_KEY


def _hot_posts(s: CommonSettings, limit: int = 10) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(s.redis_url, socket_timeout=2, decode_responses=True)
    top = cast(list[tuple[str, float]], r.zrevrange(HOT_KEY, 0, limit - 1, withscores=True))
    return [{"post_id": int(p), "rate": int(score)} for p, score in top]


def _guard(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _dlq(s: CommonSettings) -> dict[str, Any]:
    return {"topic": s.dlq_topic, "messages": dlq_depth(s.kafka_bootstrap, s.dlq_topic)}


def _backfill(s: CommonSettings) -> dict[str, Any]:
    """The latest recorded backfill run (a running one whose heartbeats stopped: died)."""
    from ops import backfill_runs

    runs = backfill_runs.runs(s)
    return {"last": runs[-1].to_json() if runs else None, "runs": len(runs)}


def _slot(s: CommonSettings) -> dict[str, Any]:
    state = slot_state(s.postgres_url)
    return {"present": state is not None, **(state or {}), "alert_bytes": s.slot_wal_alert_bytes}


def _alerts(s: CommonSettings, report: dict[str, Any]) -> None:
    try:
        report["alerts"] = firing_alerts(s.prometheus_url)
    except PrometheusUnavailable as e:
        report["alerts"] = []
        report["alerts_note"] = f"Prometheus unreachable, no alerts known: {e}"


def _slot_warnings(slot: dict[str, Any]) -> dict[str, str]:
    """Alert name to warning, for the slot conditions that hold now."""
    if "error" in slot:
        return {}
    if not slot["present"]:
        return {"ReplicationSlotMissing": "the replication slot of the connector is missing"}
    out: dict[str, str] = {}
    if slot.get("wal_status") == "lost":
        out["ReplicationSlotInvalidated"] = "the replication slot was invalidated (WAL lost)"
    retained = slot.get("retained_wal_bytes")
    if retained is not None and retained > slot["alert_bytes"]:
        out["ReplicationSlotWalHigh"] = (
            f"the replication slot retains {_bytes(retained)} of WAL, above "
            f"LIKES_SLOT_WAL_ALERT_BYTES ({_bytes(slot['alert_bytes'])})"
        )
    return out


def warnings(report: dict[str, Any]) -> list[str]:
    """Every firing alert, then slot conditions whose alert does not fire (yet)."""
    firing = {a["name"] for a in report.get("alerts", [])}
    out = [
        f"ALERT {a['name']}"
        + (f" ({a['labels'][k]})" if (k := _subject(a["labels"])) else "")
        + f": {a['summary']}"
        for a in report.get("alerts", [])
    ]
    slot_warnings = _slot_warnings(report.get("slot", {"error": "unknown"}))
    out.extend(text for name, text in slot_warnings.items() if name not in firing)
    last = (report.get("backfill") or {}).get("last") or {}
    if last.get("status") == "died":
        out.append(
            f"the backfill started {last['started_at']} died (no heartbeat since "
            f"{last['heartbeat_at']}): its projections may be half rebuilt and dead letters "
            "committed while it ran stay uncertain; run `likes backfill` again"
        )
    kafka = report.get("kafka") or {}
    if kafka.get("under_replicated_partitions") or kafka.get("offline_partitions"):
        out.append(
            f"Kafka: {kafka['under_replicated_partitions']} under-replicated and "
            f"{kafka['offline_partitions']} offline partitions (a broker is down or catching up)"
        )
    return out


def _subject(labels: dict[str, str]) -> str | None:
    return next((k for k in ("component", "flow", "projection") if k in labels), None)


def collect(s: CommonSettings) -> dict[str, Any]:
    """Everything ``likes status`` reports, as plain data."""
    comps: dict[str, Any] = {}
    for comp in build_components(s):
        pid = process.live_pid(stack.pid_file(s, comp.name))
        comps[comp.name] = {
            "pid": pid,
            "healthy": bool(pid) and _guard(comp.healthy) is True,
            "restarts": stack.restarts(s, comp.name),
        }
    report: dict[str, Any] = {
        "components": comps,
        "healthy": all(c["healthy"] for c in comps.values()),
        "cdc": _guard(cdc_lag, s.postgres_url, s.kafka_bootstrap, s.events_topic),
        "slot": _guard(_slot, s),
        "hot_posts": _guard(_hot_posts, s),
        "dlq": _guard(_dlq, s),
        "profile": s.profile,
        "kafka": _guard(kafka_report, s.kafka_bootstrap),
        "backfill": _guard(_backfill, s),
    }
    from ops.flow_status import flow_report

    report.update(_guard(flow_report, s) or {})
    _alerts(s, report)
    report["warnings"] = warnings(report)
    return report


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _components_table(report: dict[str, Any]) -> Table:
    table = Table(title="components", title_justify="left")
    for col in ("component", "state", "pid", "restarts"):
        table.add_column(col, justify="right" if col in ("pid", "restarts") else "left")
    for name, c in report["components"].items():
        state = Text("ok", style="green") if c["healthy"] else Text("DOWN", style="bold red")
        table.add_row(name, state, str(c["pid"] or "-"), str(c["restarts"]))
    return table


def _cdc_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    cdc, slot = report["cdc"], report.get("slot") or {}
    rows = [("CDC lag", f"unavailable ({cdc['error']})" if "error" in cdc else _secs(cdc))]
    if "error" in slot:
        rows.append(("replication slot", f"unavailable ({slot['error']})"))
    elif not slot.get("present"):
        rows.append(("replication slot", "MISSING"))
    else:
        retained = slot.get("retained_wal_bytes")
        rows.append(
            (
                "slot retained WAL",
                f"{_bytes(retained) if retained is not None else '?'}"
                f" (alert above {_bytes(slot['alert_bytes'])}; {slot.get('wal_status')},"
                f" {'active' if slot.get('active') else 'inactive'})",
            )
        )
    return rows


def _secs(cdc: dict[str, Any]) -> str:
    lag = cdc.get("lag_seconds")
    return "unknown" if lag is None else f"{lag:.1f} s"


def _drift(raw: str | None) -> str:
    """``likes:last_drift`` as ``redis 0, postgres 0, clickhouse 0 (at ...)``."""
    if raw is None:
        return "never measured (likes reconcile)"
    try:
        drift = dict(json.loads(raw))
    except (ValueError, TypeError):
        return str(raw)
    at = drift.pop("at", "?")
    return ", ".join(f"{k} {v}" for k, v in drift.items()) + f" (at {at})"


def _kafka(kafka: dict[str, Any]) -> str:
    if "error" in kafka or "brokers" not in kafka:
        return f"unavailable ({kafka.get('error', 'no answer')})"
    ids = ", ".join(str(b) for b in kafka["brokers"])
    return (
        f"{len(kafka['brokers'])} brokers up ({ids}); under-replicated partitions "
        f"{kafka['under_replicated_partitions']}, offline {kafka['offline_partitions']}"
    )


def _last_backfill(backfill: dict[str, Any]) -> str:
    if "error" in backfill:
        return f"unavailable ({backfill['error']})"
    last = backfill.get("last")
    if not last:
        return "none recorded"
    what = ", ".join(last["projections"]) + (f", since {last['since']}" if last["since"] else "")
    if last["status"] == "running":
        return f"running since {last['started_at']} ({what}; heartbeat {last['heartbeat_at']})"
    ended = f", ended {last['ended_at']}" if last["ended_at"] else ""
    status = "DIED" if last["status"] == "died" else last["status"]
    return f"{status}: started {last['started_at']}{ended} ({what})"


def _figure_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = _cdc_rows(report)
    flows = report.get("flows")
    if isinstance(flows, dict):
        rows += [(f"flow {n} lag", f"{f['lag']} messages") for n, f in flows.items()]
    elif "error" in report:
        rows.append(("flow lag", f"unavailable ({report['error']})"))
    dlq = report.get("dlq") or {}
    rows.append(
        (
            "dead letters",
            f"unavailable ({dlq['error']})" if "error" in dlq else str(dlq["messages"]),
        )
    )
    rows.append(("kafka", _kafka(report.get("kafka") or {})))
    rows.append(("last backfill", _last_backfill(report.get("backfill") or {})))
    rows.append(("drift", _drift(report.get("drift"))))
    hot = report["hot_posts"]
    rows.append(
        (
            "hot posts",
            ", ".join(f"{h['post_id']} ({h['rate']})" for h in hot)
            if isinstance(hot, list) and hot
            else ("none" if isinstance(hot, list) else f"unavailable ({hot['error']})"),
        )
    )
    return rows


def render_rich(report: dict[str, Any]) -> RenderableType:
    """The status page: components, pipeline figures, then warnings."""
    figures = Table(title="pipeline", title_justify="left")
    figures.add_column("figure")
    figures.add_column("value")
    for name, value in _figure_rows(report):
        figures.add_row(name, value)
    parts: list[RenderableType] = [_components_table(report), figures]
    parts += [Text(f"WARNING: {w}", style="bold yellow") for w in report.get("warnings", [])]
    if report.get("alerts_note"):
        parts.append(Text(report["alerts_note"], style="dim"))
    return Group(*parts)


def render(report: dict[str, Any]) -> str:
    """The status page as plain text (tables drawn by rich, no colour codes)."""
    buf = io.StringIO()
    width = max(80, shutil.get_terminal_size((100, 24)).columns)
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(
        render_rich(report)
    )
    return buf.getvalue().rstrip("\n")
