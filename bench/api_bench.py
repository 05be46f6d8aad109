"""Benchmarks 1 (``api_vs_pgbench``) and 2 (``hot_post``): the like path through the API
against pgbench running the same transaction, at the same concurrency, on the same posts.
"""

from __future__ import annotations

from dataclasses import asdict

from bench.api_fixture import CONCURRENCY, ApiFixture, ApiMax, OpenLoop, PgMax
from bench.api_profile import ApiProfile, profile_api
from bench.context import Ctx
from bench.log import log
from bench.pgbench_like import run_pgbench
from bench.results import Metric, Result
from bench.stack_wait import paused_pipeline, settle
from bench.stats import fmt, ratio


def _where_time_goes(api: ApiMax, pg: PgMax, prof: ApiProfile | None) -> str:
    a, p = api.cpu_us_per_like, pg.cpu_us_per_like
    parts = ", ".join(f"{k} {v:.0f}" for k, v in list(a.items())[:6])
    s = (
        f"CPU µs per like through the API: {parts} (machine {api.machine_busy:.0%} busy); "
        f"per pgbench transaction: postgres {p.get('postgres', 0):.0f}, pgbench "
        f"{p.get('pgbench', 0):.0f}. Server-side mean latency {fmt(api.server_mean_ms)} ms of "
        f"{fmt(api.mean_ms)} ms seen by wrk."
    )
    if prof:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in list(prof.share_by_package.items())[:7])
        s += f" Inside the API process (cProfile, main thread): {shares}."
    return s


def _max_metric(api: ApiMax, pg: PgMax) -> Metric:
    r = ratio(api.rate, pg.rate)
    return Metric(
        label=f"likes/s at {CONCURRENCY} clients",
        ours=api.rate,
        limit=pg.rate,
        unit="likes/s",
        ratio=r,
        goal="≥ 1.0x pgbench",
        met=r is not None and r >= 1.0,
        ours_text=f"{api.rate:,.0f} likes/s (p50 {fmt(api.p50_ms)} ms, p99 {fmt(api.p99_ms)} ms)",
        limit_text=f"pgbench same tx: {pg.rate:,.0f} tps (p50 {fmt(pg.p50_ms)} ms, "
        f"p99 {fmt(pg.p99_ms)} ms)",
    )


def _half_metric(api: OpenLoop, pg: OpenLoop) -> Metric:
    p99 = api.p99_ms
    return Metric(
        label=f"p99 at half load ({api.target_rate:,.0f}/s)",
        ours=p99,
        limit=pg.p99_ms,
        unit="ms",
        ratio=ratio(p99, pg.p99_ms),
        goal="p99 ≤ 25 ms",
        met=p99 is not None and p99 <= 25.0,
        ours_text=f"p99 {fmt(p99)} ms (p50 {fmt(api.p50_ms)} ms)",
        limit_text=f"pgbench -R {pg.target_rate:,.0f}: p99 {fmt(pg.p99_ms)} ms "
        f"(p50 {fmt(pg.p50_ms)} ms)",
    )


def _profile(fx: ApiFixture, seconds: float, res: Result) -> ApiProfile | None:
    try:  # run with the pipeline paused: nothing to wait for
        prof = profile_api(fx.wrk, CONCURRENCY, seconds)
    except Exception as e:  # diagnostic only
        res.notes.append(f"API profile not taken: {e}")
        return None
    res.absolute["api_profile"] = asdict(prof)
    return prof


def _api_vs_pgbench(ctx: Ctx, fx: ApiFixture, res: Result) -> None:
    dur, warm = (5.0, 2.0) if ctx.quick else (20.0, 3.0)
    res.config.update(seconds_per_phase=dur, warmup_s=warm)
    res.absolute["settle_before"] = asdict(settle())
    with paused_pipeline() as stopped:
        res.config["paused_during_runs"] = ["connector likes-outbox", *stopped]
        fx.warm_up(warm)
        api = fx.api_max(dur)
        ctx.api_max_rate = api.rate
        log(f"API max: {api.rate:.0f} likes/s p50 {api.p50_ms} ms p99 {api.p99_ms} ms")
        res.absolute["api_max"] = asdict(api)
        run_pgbench(fx.pg_load(), warm)
        pg = fx.pg_max(dur)
        log(f"pgbench max: {pg.rate:.0f} tps p50 {pg.p50_ms} ms p99 {pg.p99_ms} ms")
        res.absolute["pgbench_max"] = asdict(pg)
        api_h = fx.api_open_loop(api.rate / 2, dur)
        log(f"API at {api.rate / 2:.0f}/s: p50 {api_h.p50_ms} p99 {api_h.p99_ms} ms")
        res.absolute["api_half_load"] = asdict(api_h)
        pg_h = fx.pg_open_loop(api.rate / 2, dur)
        log(f"pgbench at {api.rate / 2:.0f}/s: p50 {pg_h.p50_ms} p99 {pg_h.p99_ms} ms")
        res.absolute["pgbench_half_load"] = asdict(pg_h)
        prof = _profile(fx, 4.0 if ctx.quick else 8.0, res)
    res.absolute["settle_after"] = asdict(settle())
    res.metrics += [_max_metric(api, pg), _half_metric(api_h, pg_h)]
    res.notes.append("Where the time goes: " + _where_time_goes(api, pg, prof))
    if api.non2xx or api.socket_errors:
        res.notes.append(f"API run had {api.non2xx} non-2xx and {api.socket_errors} socket errors")
    res.notes.append(
        "The live pipeline is paused during every run (the Debezium connector paused, "
        "the flows stopped), so the API and pgbench share the 2 cores only with Postgres, "
        "Redis, Kafka and Connect idling; it catches up afterwards."
    )


def bench_api_vs_pgbench(ctx: Ctx) -> Result:
    """The API's max like rate and its p99 at half that rate, against pgbench."""
    res = Result("api_vs_pgbench", ctx.quick)
    fx = ApiFixture(ctx.quick)
    try:
        res.config = {
            **fx.config(),
            "load_generator": f"wrk -t2 -c{CONCURRENCY} (Lua: random post, random JWT)",
            "half_load_generator": "Python asyncio open loop, latency from schedule",
            "pgbench": f"-M prepared -c{CONCURRENCY} -j2, script derived from LIKE_SQL",
        }
        _api_vs_pgbench(ctx, fx, res)
    finally:
        fx.cleanup()
    return res


def _hot_metric(api_u: ApiMax, api_h: ApiMax, pg_u: PgMax, pg_h: PgMax) -> Metric:
    ra, rp = ratio(api_h.rate, api_u.rate), ratio(pg_h.rate, pg_u.rate)
    log(f"hot/uniform: API {fmt(ra)}, pgbench {fmt(rp)}")
    return Metric(
        label="hot_post",
        ours=api_h.rate,
        limit=api_u.rate,
        unit="likes/s",
        ratio=ra,
        goal="API hot/uniform ≥ 0.95x",
        met=ra is not None and ra >= 0.95,
        ours_text=f"API, 50% on one post: {api_h.rate:,.0f} likes/s (p99 {fmt(api_h.p99_ms)} ms)",
        limit_text=f"API uniform {api_u.rate:,.0f} likes/s (p99 {fmt(api_u.p99_ms)} ms); "
        f"pgbench hot/uniform {fmt(rp)}x ({pg_h.rate:,.0f}/{pg_u.rate:,.0f} tps)",
    )


def bench_hot_post(ctx: Ctx) -> Result:
    """Half of the likes on one post, against a uniform spread, API and pgbench."""
    dur = 5.0 if ctx.quick else 15.0
    res = Result("hot_post", ctx.quick)
    fx = ApiFixture(ctx.quick)
    try:
        res.config = {
            **fx.config(),
            "seconds_per_phase": dur,
            "hot_share": 0.5,
            "hot_post": fx.hot,
            "order": "API uniform, API hot, pgbench uniform, "
            "pgbench hot; live pipeline drained between phases",
        }
        settle()
        fx.warm_up(2.0)
        settle()
        api_u = fx.api_max(dur)
        settle()
        api_h = fx.api_max(dur, hot_share=0.5)
        settle()
        pg_u = fx.pg_max(dur)
        settle()
        pg_h = fx.pg_max(dur, hot_permille=500)
        settle()
        res.absolute = {
            "api_uniform": asdict(api_u),
            "api_hot": asdict(api_h),
            "pgbench_uniform": asdict(pg_u),
            "pgbench_hot": asdict(pg_h),
        }
        res.metrics.append(_hot_metric(api_u, api_h, pg_u, pg_h))
        if api_h.unchanged_already_liked:
            res.notes.append(
                f"{api_h.unchanged_already_liked:.0f} hot-run likes hit an already-liked edge "
                "(no outbox row; an extra SELECT)"
            )
    finally:
        fx.cleanup()
    return res
