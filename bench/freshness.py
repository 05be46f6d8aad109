"""Benchmark 5 (``freshness``): API commit to the post's count visible in Redis.

Through the LIVE stack (API, Postgres, Debezium, Kafka, the running ``flow-counts``),
under a sustained open-loop like load at half the whole system's maximum rate (the
issue's definition: ``system_throughput`` in the same run, else its kept result in
``bench/results/``; without either, half the API's maximum rate, from
``api_vs_pgbench`` in the same run or a short wrk run here), probe likes are
timed from the API's acknowledgement to the first poll that sees them
(:mod:`bench.freshness_measure`). The machine's limit, measured beside it under the
same load: the transport floor (:class:`bench.freshness_probes.FloorProbe`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from bench.api_fixture import CONCURRENCY
from bench.context import Ctx
from bench.fixtures import id_base, make_tokens, register_posts
from bench.freshness_measure import Freshness, Prober, ProbeUsers, measure
from bench.freshness_probes import FloorProbe, TopicWatch
from bench.isolation import isolated_redis_db
from bench.log import log
from bench.open_loop import like_requests, run_async
from bench.results import Metric, Result, result_name, results_dir
from bench.stack_wait import require_live_flow, settle
from bench.stats import fmt, ratio
from bench.wrk import WrkLoad
from core.settings import CommonSettings


@dataclass(frozen=True)
class _Setup:
    load_posts: list[int]
    load_tokens: list[str]
    probe_posts: list[int]
    probe_users: ProbeUsers


def _setup(quick: bool, seconds: float) -> _Setup:
    nposts, nusers = (200, 20_000) if quick else (1000, 60_000)
    pbase = id_base()
    load_posts = [pbase + i for i in range(1, nposts + 1)]
    probe_posts = [pbase + nposts + i for i in range(1, 11)]
    register_posts(load_posts + probe_posts, id_base() + 3)
    load_tokens = make_tokens([id_base() + i for i in range(1, nusers + 1)])
    pu = id_base()
    probe_ids = [pu + i for i in range(1, int(seconds * 12) + 100)]
    return _Setup(
        load_posts, load_tokens, probe_posts, ProbeUsers(make_tokens(probe_ids), probe_ids)
    )


def _api_max_rate(ctx: Ctx, posts: list[int], tokens: list[str]) -> float:
    if ctx.api_max_rate:
        return ctx.api_max_rate
    w = WrkLoad(tokens, posts)
    url = CommonSettings().api_url
    try:
        w.run(url, connections=CONCURRENCY, seconds=2)
        return w.run(url, connections=CONCURRENCY, seconds=5).rate
    finally:
        w.cleanup()


def _kept_system_max(quick: bool) -> tuple[float, str] | None:
    """The highest rate the whole system kept up with in the kept result, and when."""
    name = result_name("system_throughput", CommonSettings().profile)
    path = results_dir(quick) / f"{name}.json"
    if not path.exists():
        return None
    kept = json.loads(path.read_text())
    best = float(kept["metrics"][0]["ours"])
    return (
        (best, f"bench/results system_throughput ({kept.get('date', 'date unknown')})")
        if best
        else None
    )


def _load_rate(ctx: Ctx, st: _Setup) -> tuple[float, str]:
    """Half the system's maximum rate, and where that maximum came from."""
    if ctx.system_max_rate:
        return ctx.system_max_rate / 2, "half the system's max: system_throughput (same run)"
    kept = _kept_system_max(ctx.quick)
    if kept is not None:
        return kept[0] / 2, f"half the system's max: {kept[1]}"
    rate = _api_max_rate(ctx, st.load_posts, st.load_tokens) / 2
    source = "api_vs_pgbench (same run)" if ctx.api_max_rate else "a short wrk run here"
    return rate, f"half the API's max (no system_throughput result): {source}"


def _run(st: _Setup, rate: float, seconds: float) -> Freshness:
    with isolated_redis_db() as floor_url:
        floor = FloorProbe(floor_url)
        watch = TopicWatch()
        try:
            log(f"freshness: {seconds:.0f}s of load at {rate:.0f} likes/s with probes")

            async def go() -> Freshness:
                prober = Prober(st.probe_posts, st.probe_users, floor, floor_url, watch)
                make = like_requests(st.load_posts, st.load_tokens)
                return await measure(prober, rate, seconds, make)

            return run_async(go())
        finally:
            floor.close()
            watch.close()


def _metrics(m: Freshness, rate: float) -> list[Metric]:
    f, fl, missing = m.freshness_from_ack_ms, m.floor_ms, m.probes_never_seen
    p50 = Metric(
        label="p50",
        ours=f.p50,
        limit=fl.p50,
        unit="ms",
        ratio=ratio(f.p50, fl.p50),
        goal="p50 ≤ 300 ms",
        met=f.p50 is not None and f.p50 <= 300 and not missing,
        ours_text=f"p50 {fmt(f.p50)} ms at {rate:,.0f} likes/s",
        limit_text=f"Kafka→consumer→Redis floor p50 {fmt(fl.p50)} ms",
    )
    p99 = Metric(
        label="p99",
        ours=f.p99,
        limit=fl.p99,
        unit="ms",
        ratio=ratio(f.p99, fl.p99),
        goal="p99 ≤ 1 s",
        met=f.p99 is not None and f.p99 <= 1000 and not missing,
        ours_text=f"p99 {fmt(f.p99)} ms (max {fmt(f.max)} ms)",
        limit_text=f"floor p99 {fmt(fl.p99)} ms",
    )
    return [p50, p99]


def _notes(m: Freshness, rate: float) -> list[str]:
    notes = []
    if m.probes_never_seen:
        notes.append(
            f"{m.probes_never_seen} of {m.probes_ok} probe likes never became visible "
            "within 15 s after the load stopped"
        )
    a, b = m.split_ack_to_kafka_ms, m.split_kafka_to_redis_ms
    notes.append(
        f"Split: API ack → event on likes.events (Debezium, poll.interval.ms 100) p50 "
        f"{fmt(a.p50)} / p99 {fmt(a.p99)} ms; likes.events → Redis count (flow-counts) "
        f"p50 {fmt(b.p50)} / p99 {fmt(b.p99)} ms (seen by a bench consumer, "
        "fetch.wait.max.ms 10)."
    )
    per = ", ".join(f"{k} {v:.0f}" for k, v in m.cpu_us_per_like_during_load.items())
    notes.append(f"CPU µs per like during the sustained load, per component: {per}")
    ld = m.load
    notes.append(
        f"background load achieved {ld.achieved_rate:.0f}/s of {rate:.0f}/s "
        f"(API p99 {fmt(ld.p99_ms)} ms, statuses {ld.statuses})"
    )
    return notes


def bench_freshness(ctx: Ctx) -> Result:
    """Commit-to-Redis freshness of the live pipeline at half the system's max rate."""
    seconds = 15.0 if ctx.quick else 60.0
    res = Result("freshness", ctx.quick)
    require_live_flow("flow-counts")
    st = _setup(ctx.quick, seconds)
    settle()
    rate, rate_source = _load_rate(ctx, st)
    res.config = {
        "seconds": seconds,
        "load_rate": round(rate, 1),
        "load": "open loop, uniform over fresh posts, distinct users",
        "probe_interval_ms": 100,
        "probe_posts": len(st.probe_posts),
        "poll_ms": 5,
        "measured_from": "API acknowledgement (commit precedes it) to first poll "
        "that sees the count",
        "load_rate_source": rate_source,
    }
    settle()
    m = _run(st, rate, seconds)
    res.absolute = asdict(m)
    f, fl = m.freshness_from_ack_ms, m.floor_ms
    log(f"freshness p50 {fmt(f.p50)} p99 {fmt(f.p99)} ms; floor p50 {fmt(fl.p50)} ms")
    res.metrics += _metrics(m, rate)
    res.notes += _notes(m, rate)
    return res
