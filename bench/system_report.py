"""What ``system_throughput`` reports: each step's figures, whether it kept up, the rows.

A step keeps up when the API's p99 is at most 50 ms, the freshness p99 at most 1 s with
every probe seen, at least 95% of the offered rate is acknowledged, and no lag grows
from the step's start to its end by more than the tolerance: CDC's by more than 1 s,
a flow's by more than a second of the offered rate (at least 200 events).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bench.cpu import cpu_per_op
from bench.freshness_measure import Freshness
from bench.load_clients import StepLoad
from bench.results import Metric
from bench.stack_wait import LagSample
from bench.stats import fmt, pct, ratio
from core.settings import CommonSettings
from core.topology import component_of
from devstack.components import FLOW_NAMES, build_components

API_P99_MS = 50.0
FRESHNESS_P99_MS = 1000.0
MIN_ACKED_SHARE = 0.95
CDC_GROWTH_S = 1.0
FLOW_GROWTH_MIN = 200
GOAL_RATE = 2500


@dataclass
class Step:
    """One step's figures (latencies in ms, CPU per like in µs)."""

    offered: float
    clients: int
    seconds: float
    sent: int
    acked: int
    acked_rate: float
    statuses: dict[int, int]
    errors: int
    api_p50_ms: float | None
    api_p99_ms: float | None
    generator_send_lag_p99_ms: float | None
    freshness_p50_ms: float | None
    freshness_p99_ms: float | None
    probes_ok: int
    probes_never_seen: int
    ack_to_kafka_p99_ms: float | None
    kafka_to_redis_p99_ms: float | None
    floor_p99_ms: float | None
    lag_start: LagSample
    lag_end: LagSample
    cpu_s: dict[str, float]
    cpu_us_per_like: dict[str, float]
    cpu_us_per_like_above_idle: dict[str, float]  # less what it spends with no load
    loadgen_us_per_request: float | None
    keeps_up: bool = False
    misses: list[str] = field(default_factory=list)
    attempt: int = 1  # a step that does not keep up is tried a second time

    @staticmethod
    def of(
        load: StepLoad,
        f: Freshness,
        lags: tuple[LagSample, LagSample],
        cpu: dict[str, float],
        idle: dict[str, float],
        wall_s: float,
    ) -> Step:
        """The step's figures from what was measured (``cpu`` over ``wall_s`` seconds;
        ``idle``: cores per category with no load)."""
        likes = load.acked + f.probes_ok
        gen = cpu.get("loadgen")
        above = {
            k: max(0.0, v - idle.get(k, 0.0) * wall_s)
            for k, v in cpu.items()
            if not k.startswith("_")
        }
        return Step(
            offered=load.offered_rate,
            clients=load.clients,
            seconds=load.seconds,
            sent=load.sent,
            acked=load.acked,
            acked_rate=round(load.acked_rate, 1),
            statuses=load.statuses,
            errors=load.errors,
            api_p50_ms=pct(load.latencies_ms, 50),
            api_p99_ms=pct(load.latencies_ms, 99),
            generator_send_lag_p99_ms=load.send_lag_p99_ms,
            freshness_p50_ms=f.freshness_from_ack_ms.p50,
            freshness_p99_ms=f.freshness_from_ack_ms.p99,
            probes_ok=f.probes_ok,
            probes_never_seen=f.probes_never_seen,
            ack_to_kafka_p99_ms=f.split_ack_to_kafka_ms.p99,
            kafka_to_redis_p99_ms=f.split_kafka_to_redis_ms.p99,
            floor_p99_ms=f.floor_ms.p99,
            lag_start=lags[0],
            lag_end=lags[1],
            cpu_s=cpu,
            cpu_us_per_like=cpu_per_op(cpu, likes, floor=0.0),
            cpu_us_per_like_above_idle=cpu_per_op(above, likes, floor=0.0),
            loadgen_us_per_request=round(gen / load.sent * 1e6, 1) if gen and load.sent else None,
        )

    def lag_growth(self) -> dict[str, float | None]:
        """End minus start of CDC's lag (s) and each flow's lag (events); None if unknown."""
        a, b = self.lag_start, self.lag_end
        out: dict[str, float | None] = {
            "cdc_s": None if a.cdc_s is None or b.cdc_s is None else round(b.cdc_s - a.cdc_s, 2)
        }
        for name in FLOW_NAMES:
            grew = b.flows[name] - a.flows[name] if a.flows and b.flows else None
            out[f"flow-{name}"] = None if grew is None else float(grew)
        return out


def judge(step: Step) -> Step:
    """Set whether ``step`` kept up, and why not."""
    m = step.misses
    if step.api_p99_ms is None or step.api_p99_ms > API_P99_MS:
        m.append(f"API p99 {fmt(step.api_p99_ms)} ms > {API_P99_MS:.0f}")
    if step.freshness_p99_ms is None or step.freshness_p99_ms > FRESHNESS_P99_MS:
        m.append(f"freshness p99 {fmt(step.freshness_p99_ms)} ms > {FRESHNESS_P99_MS:.0f}")
    if step.probes_never_seen:
        m.append(f"{step.probes_never_seen} probes never seen")
    if step.acked_rate < MIN_ACKED_SHARE * step.offered:
        m.append(f"acknowledged {step.acked_rate:,.0f}/s of {step.offered:,.0f}/s")
    flow_tol = max(FLOW_GROWTH_MIN, step.offered * 1.0)
    for name, grew in step.lag_growth().items():
        tol = CDC_GROWTH_S if name == "cdc_s" else flow_tol
        if grew is None:
            m.append(f"{name} lag unknown")
        elif grew > tol:
            m.append(f"{name} lag grew by {fmt(grew)}")
    step.keeps_up = not m
    return step


def _system_kinds() -> set[str]:
    return {component_of(c.name) for c in build_components(CommonSettings())}


def _system_us(step: Step, above_idle: bool = False) -> float:
    """CPU µs per like of the stack's own components (not the load generator, the
    benchmark's probes, or other load on the machine)."""
    kinds = _system_kinds()
    per = step.cpu_us_per_like_above_idle if above_idle else step.cpu_us_per_like
    return sum(v for k, v in per.items() if k in kinds)


def _per_component(step: Step) -> str:
    """``component all/above-idle`` µs per like, the total, and the load generator."""
    kinds = _system_kinds()
    above = step.cpu_us_per_like_above_idle
    parts = [
        f"{k} {v:,.0f}/{above.get(k, 0.0):,.0f}"
        for k, v in step.cpu_us_per_like.items()
        if k in kinds
    ]
    return (
        ", ".join(parts)
        + f"; total {_system_us(step):,.0f}/{_system_us(step, True):,.0f}; load generator "
        f"{fmt(step.loadgen_us_per_request)} µs/request"
    )


def step_notes(steps: list[Step]) -> list[str]:
    """One line per step."""
    out = []
    for s in steps:
        grew = ", ".join(f"{k} {fmt(v)}" for k, v in s.lag_growth().items())
        verdict = "keeps up" if s.keeps_up else "does NOT keep up: " + "; ".join(s.misses)
        out.append(
            f"{s.offered:,.0f}/s offered (attempt {s.attempt}, {s.clients} client processes, "
            "generator late p99 "
            f"{fmt(s.generator_send_lag_p99_ms)} ms): {s.acked_rate:,.0f}/s acknowledged, API "
            f"p50 {fmt(s.api_p50_ms)} / p99 {fmt(s.api_p99_ms)} ms, freshness p50 "
            f"{fmt(s.freshness_p50_ms)} / p99 {fmt(s.freshness_p99_ms)} ms (ack→Kafka p99 "
            f"{fmt(s.ack_to_kafka_p99_ms)}, Kafka→Redis p99 {fmt(s.kafka_to_redis_p99_ms)}, "
            f"floor p99 {fmt(s.floor_p99_ms)}); lag growth {grew}; CPU µs per like (all / "
            f"above idle): {_per_component(s)}; {verdict}"
        )
    return out


def metrics(steps: list[Step], drain: dict[str, object]) -> list[Metric]:
    """The rows: the highest rate that keeps up, the CPU per like there, exactness."""
    ok = [s for s in steps if s.keeps_up]
    at = ok[-1] if ok else steps[-1]
    best = at.offered if ok else 0.0
    sys_us = _system_us(at)
    cores = os.cpu_count() or 1
    limit = cores * 1e6 / sys_us if sys_us else None
    return [
        Metric(
            label="highest offered rate that keeps up",
            ours=best,
            limit=limit,
            unit="likes/s",
            ratio=ratio(best, limit),
            goal=f"≥ {GOAL_RATE:,} likes/s",
            met=best >= GOAL_RATE,
            ours_text=f"{best:,.0f} likes/s (API p99 {fmt(at.api_p99_ms)} ms, freshness p99 "
            f"{fmt(at.freshness_p99_ms)} ms)"
            if ok
            else "none (not even the first step)",
            limit_text=f"{cores} cores / {sys_us:,.0f} µs CPU per like at {at.offered:,.0f}/s "
            f"= {fmt(limit)} likes/s",
        ),
        Metric(
            label=f"CPU µs per like at {at.offered:,.0f}/s",
            ours=round(sys_us, 1),
            limit=None,
            unit="µs/like",
            ratio=None,
            goal="every component measured",
            met=None,
            ours_text=_per_component(at),
            limit_text="all / above the idle baseline; per process from /proc, members "
            "added up per component",
        ),
        _exact_metric(drain),
    ]


def _exact_metric(drain: dict[str, object]) -> Metric:
    report = drain["report"]
    assert isinstance(report, dict)
    drifting = sum(v["drifting_posts"] for v in report.values() if isinstance(v, dict))
    exact = bool(drain["exact"])
    return Metric(
        label="projections exact after the drain",
        ours=float(drifting),
        limit=None,
        unit="drifting posts",
        ratio=None,
        goal="every projection exact",
        met=exact,
        ours_text=(
            f"exact: {report['posts_checked']} posts, after {drain['waited_s']} s"
            if exact
            else f"{drifting} drifting post values after {drain['waited_s']} s: {report}"
        ),
        limit_text="edge store (ops.drift)",
    )
