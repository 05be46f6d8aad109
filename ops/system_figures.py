"""What the system did over a span of time, as its own metrics record it: the figures
``make demo`` prints after its workload, so a user sees the system's rate, freshness and
lag, not only what the load generator saw.

Guarantee: every figure is read from Prometheus, from a series a component exports
(contract section 7), over exactly the span asked for; a figure Prometheus cannot give
(it is down, or the series saw nothing in the span) is None, never estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from core.settings import CommonSettings
from devstack.prometheus import INTERVAL
from ops.prometheus_api import PrometheusUnavailable, query

# how long after a span its last samples are surely scraped: one interval and a second
SETTLE_S = float(INTERVAL.removesuffix("s")) + 1.0


@dataclass
class SystemFigures:
    """The system over ``[start, end]``; rates are per second of ``busy_s``."""

    busy_s: float
    applied_per_s: float | None = None  # like/unlike requests the API applied
    changed_per_s: float | None = None  # of those, real transitions (an outbox event each)
    flow_events_per_s: dict[str, float] = field(default_factory=dict)  # decoded, per flow
    freshness_p50_s: float | None = None  # outbox commit -> Redis count visible
    freshness_p99_s: float | None = None
    cdc_lag_max_s: float | None = None
    flow_lag_max: dict[str, float] = field(default_factory=dict)  # messages, per flow
    unavailable: str | None = None  # why there are no figures


def _one(rows: list[dict[str, Any]]) -> float | None:
    values = [float(r["value"]) for r in rows]
    return values[0] if values and not math.isnan(values[0]) else None


def _by(rows: list[dict[str, Any]], label: str) -> dict[str, float]:
    out = {str(r["labels"].get(label, "")): float(r["value"]) for r in rows}
    return {k: v for k, v in sorted(out.items()) if not math.isnan(v)}


def _delta(selector: str, start: float) -> str:
    """How much each counter of ``selector`` grew since ``start``: its value now minus its
    value then (PromQL ``@``), exact where ``increase()`` would extrapolate over the
    scrape gaps; a series with no sample then (its process started within the span)
    counts whole, from its start at 0."""
    return f"(({selector} - {selector} @ {start:.3f}) or {selector})"


def measure(s: CommonSettings, start: float, end: float, busy_s: float) -> SystemFigures:
    """The figures of ``[start, end]`` (epoch seconds; ``end`` at least ``SETTLE_S`` in
    the past, so its samples are in), rates over ``busy_s`` seconds."""
    span = f"{max(1, math.ceil(end - start))}s"
    figures = SystemFigures(busy_s=busy_s)

    def q(promql: str) -> list[dict[str, Any]]:
        return query(s.prometheus_url, promql, end)

    try:
        applied = _one(q(f"sum({_delta('likes_api_transitions_total', start)})"))
        changes = 'likes_api_transitions_total{changed="true"}'
        changed = _one(q(f"sum({_delta(changes, start)})"))
        events = _by(q(f"sum by (flow) ({_delta('likes_flow_events_total', start)})"), "flow")
        fresh = f"sum by (le) ({_delta('likes_freshness_seconds_bucket', start)})"
        figures.freshness_p50_s = _one(q(f"histogram_quantile(0.5, {fresh})"))
        figures.freshness_p99_s = _one(q(f"histogram_quantile(0.99, {fresh})"))
        figures.cdc_lag_max_s = _one(q(f"max(max_over_time(likes_cdc_lag_seconds[{span}]))"))
        figures.flow_lag_max = _by(
            q(f"max by (flow) (max_over_time(likes_flow_lag_messages[{span}]))"), "flow"
        )
    except PrometheusUnavailable as e:
        figures.unavailable = str(e)
        return figures
    per_s = 1 / busy_s if busy_s > 0 else 0.0
    figures.applied_per_s = None if applied is None else applied * per_s
    figures.changed_per_s = None if changed is None else changed * per_s
    figures.flow_events_per_s = {f: n * per_s for f, n in events.items()}
    return figures
