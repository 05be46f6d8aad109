"""``likes status``: component health, CDC lag, flow lag, drift and hot posts."""

from __future__ import annotations

from typing import Any, cast

import redis

from core.settings import CommonSettings
from devstack import process, stack
from devstack.components import build_components
from ops.cdc import cdc_lag
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
        "hot_posts": _guard(_hot_posts, s),
    }
    from ops.flow_status import flow_report

    report.update(_guard(flow_report, s) or {})
    return report


def render(report: dict[str, Any]) -> str:
    """A human-readable status page."""
    lines = ["components:"]
    for name, c in report["components"].items():
        mark = "ok  " if c["healthy"] else "DOWN"
        lines.append(f"  {mark} {name:<14} pid={c['pid']} restarts={c['restarts']}")
    cdc = report["cdc"]
    if "error" in cdc:
        lines.append(f"cdc: unavailable ({cdc['error']})")
    else:
        slot = cdc.get("slot") or {}
        lines.append(
            f"cdc: lag {cdc.get('lag_seconds')} s, slot retains "
            f"{slot.get('retained_wal_bytes')} bytes of WAL"
        )
    for name, lag in (report.get("flows") or {}).items():
        lines.append(f"flow {name}: lag {lag['lag'] if isinstance(lag, dict) else lag}")
    if report.get("drift") is not None:
        lines.append(f"drift: {report['drift']}")
    hot = report["hot_posts"]
    lines.append(
        "hot posts: "
        + (
            ", ".join(f"{h['post_id']} ({h['rate']})" for h in hot)
            if isinstance(hot, list) and hot
            else "none"
        )
    )
    return "\n".join(lines)
