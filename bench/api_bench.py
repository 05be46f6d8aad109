"""Benchmarks 1 (``api_vs_pgbench``) and 2 (``hot_post``): the like path through the API
against pgbench running the same transaction, at the same concurrency, on the same posts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    Metric,
    Result,
    cpu_delta,
    cpu_per_op,
    cpu_snapshot,
    env_for_child,
    fmt,
    free_port,
    id_base,
    log,
    make_tokens,
    pct,
    ratio,
    register_posts,
    settings,
    settle,
)
from bench.http_load import WrkLoad, open_loop, pick_request_factory, run_async
from bench.pgbench_like import run_pgbench

CONCURRENCY = 16
LIKE_ROUTE = "/v1/posts/{post_id}/like"


class Ctx:
    """State shared by benchmarks of one run (e.g. the API's measured max rate)."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.api_max_rate: float | None = None


def _api_metrics() -> dict[str, float]:
    """Server-side sums from /metrics: like latency sum/count, transitions changed/unchanged."""
    text = httpx.get(f"{settings().api_url}/metrics", timeout=10).text
    out = {"lat_sum": 0.0, "lat_count": 0.0, "changed": 0.0, "unchanged": 0.0}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if 'method="POST"' in line and LIKE_ROUTE in line and 'status="200"' in line:
            if line.startswith("likes_api_request_seconds_sum"):
                out["lat_sum"] += float(line.split()[-1])
            elif line.startswith("likes_api_request_seconds_count"):
                out["lat_count"] += float(line.split()[-1])
        if line.startswith("likes_api_transitions_total") and 'action="like"' in line:
            key = "changed" if 'changed="true"' in line else "unchanged"
            out[key] += float(line.split()[-1])
    return out


class Fixture:
    """Fresh posts and users for one benchmark (ids nobody else uses)."""

    def __init__(self, quick: bool) -> None:
        self.nposts = 200 if quick else 1000
        self.nusers = 20_000 if quick else 60_000
        self.pbase = id_base()
        self.posts = [self.pbase + i for i in range(1, self.nposts + 1)]
        self.hot = self.posts[0]
        self.author = id_base() + 1
        t0 = time.monotonic()
        register_posts(self.posts, self.author)
        self.ubase = id_base()
        self.tokens = make_tokens([self.ubase + i for i in range(1, self.nusers + 1)])
        self.wrk = WrkLoad(self.tokens, self.posts, hot=self.hot, hot_share=0.0)
        log(f"{self.nposts} posts registered, {self.nusers} tokens ({time.monotonic() - t0:.1f}s)")

    def config(self) -> dict[str, Any]:
        return {
            "posts": self.nposts,
            "post_id_range": [self.posts[0], self.posts[-1]],
            "api_users (distinct JWTs)": self.nusers,
            "pgbench_users": "random in a fresh range of 10**9 per run",
            "concurrency": CONCURRENCY,
            "idempotency_key": "none (optional header; not sent by wrk or pgbench)",
        }

    def api_max(self, seconds: float, hot_share: float = 0.0) -> dict[str, Any]:
        """wrk closed loop at CONCURRENCY connections: the API's max like rate."""
        m0, c0 = _api_metrics(), cpu_snapshot()
        w = self.wrk.run(
            settings().api_url, connections=CONCURRENCY, seconds=seconds, hot_share=hot_share
        )
        c1, m1 = cpu_snapshot(), _api_metrics()
        cpu = cpu_delta(c0, c1, tool="wrk")
        n = m1["lat_count"] - m0["lat_count"]
        return {
            "rate": w.rate,
            "requests": w.requests,
            "seconds": w.seconds,
            "non2xx": w.non2xx,
            "socket_errors": w.socket_errors,
            "p50_ms": w.p50_ms,
            "p90_ms": w.p90_ms,
            "p99_ms": w.p99_ms,
            "mean_ms": w.mean_ms,
            "server_mean_ms": (m1["lat_sum"] - m0["lat_sum"]) / n * 1000 if n else None,
            "changed": m1["changed"] - m0["changed"],
            "unchanged (already liked)": m1["unchanged"] - m0["unchanged"],
            "cpu_s": cpu,
            "cpu_us_per_like": cpu_per_op(cpu, w.requests),
            "machine_busy": round(
                cpu.get("_machine_busy", 0) / max(cpu.get("_machine_total", 1), 1e-9), 3
            ),
        }

    def pg_max(self, seconds: float, hot_permille: int = 0) -> dict[str, Any]:
        c0 = cpu_snapshot()
        r = run_pgbench(
            pbase=self.pbase,
            nposts=self.nposts,
            ubase=id_base(10**9),
            nusers=10**9,
            clients=CONCURRENCY,
            seconds=seconds,
            hot=self.hot if hot_permille else None,
            hot_permille=hot_permille,
        )
        c1 = cpu_snapshot()
        cpu = cpu_delta(c0, c1, tool="pgbench")
        return {
            "rate": r.tps,
            "transactions": r.transactions,
            "failed": r.failed,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "mean_ms": r.mean_ms,
            "cpu_s": cpu,
            "cpu_us_per_like": cpu_per_op(cpu, r.transactions),
            "machine_busy": round(
                cpu.get("_machine_busy", 0) / max(cpu.get("_machine_total", 1), 1e-9), 3
            ),
        }

    def api_open_loop(self, rate: float, seconds: float) -> dict[str, Any]:
        make = pick_request_factory(self.posts, self.tokens)
        r = run_async(open_loop(settings().api_url, rate, seconds, make))
        return {
            "target_rate": rate,
            "achieved_rate": r.achieved_rate,
            "ok": len(r.latencies_ms),
            "statuses": r.statuses,
            "errors": r.errors,
            "p50_ms": pct(r.latencies_ms, 50),
            "p99_ms": pct(r.latencies_ms, 99),
            "max_ms": max(r.latencies_ms) if r.latencies_ms else None,
            "generator_p99_send_lag_ms": round(r.p99_send_lag_ms, 2),
            "generator_max_send_lag_ms": round(r.max_send_lag_ms, 2),
        }

    def pg_open_loop(self, rate: float, seconds: float) -> dict[str, Any]:
        r = run_pgbench(
            pbase=self.pbase,
            nposts=self.nposts,
            ubase=id_base(10**9),
            nusers=10**9,
            clients=CONCURRENCY,
            seconds=seconds,
            rate=rate,
        )
        return {
            "target_rate": rate,
            "achieved_rate": r.tps,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "transactions": r.transactions,
        }

    def cleanup(self) -> None:
        self.wrk.cleanup()


def profile_api(fx: Fixture, seconds: float) -> dict[str, Any]:
    """Run a bench-owned API instance under cProfile with the same wrk load."""
    from bench.api_profile import summarize

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-prof-"))
    out = tmp / "api.prof"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.api_profile", str(port), str(out)],
        env=env_for_child(),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "api.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError("profiled API did not start")
        w = fx.wrk.run(url, connections=CONCURRENCY, seconds=seconds)
        os.kill(proc.pid, signal.SIGUSR1)
        proc.wait(timeout=30)
        summary = summarize(out, w.requests)
        summary["rate_under_profiler"] = round(w.rate, 1)
        return summary
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _where_time_goes(api: dict[str, Any], pg: dict[str, Any], prof: dict[str, Any] | None) -> str:
    a, p = api["cpu_us_per_like"], pg["cpu_us_per_like"]
    parts = ", ".join(f"{k} {v:.0f}" for k, v in list(a.items())[:6])
    s = (
        f"CPU µs per like through the API: {parts} (machine {api['machine_busy']:.0%} busy); "
        f"per pgbench transaction: postgres {p.get('postgres', 0):.0f}, pgbench "
        f"{p.get('pgbench', 0):.0f}. Server-side mean latency {fmt(api['server_mean_ms'])} ms of "
        f"{fmt(api['mean_ms'])} ms seen by wrk."
    )
    if prof:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in list(prof["share_by_package"].items())[:7])
        s += f" Inside the API process (cProfile, main thread): {shares}."
    return s


def bench_api_vs_pgbench(ctx: Ctx) -> Result:
    quick = ctx.quick
    dur = 5.0 if quick else 20.0
    warm = 2.0 if quick else 3.0
    res = Result("api_vs_pgbench", quick)
    fx = Fixture(quick)
    try:
        res.config = {
            **fx.config(),
            "seconds_per_phase": dur,
            "warmup_s": warm,
            "load_generator": "wrk -t2 -c16 (Lua: random post, random JWT)",
            "half_load_generator": "Python asyncio open loop, latency from schedule",
            "pgbench": "-M prepared -c16 -j2, script derived from LIKE_SQL",
        }
        res.absolute["settle_before"] = settle()
        fx.wrk.run(settings().api_url, connections=CONCURRENCY, seconds=warm)
        api = fx.api_max(dur)
        res.absolute["api_max"] = api
        ctx.api_max_rate = api["rate"]
        log(f"API max: {api['rate']:.0f} likes/s p50 {api['p50_ms']} ms p99 {api['p99_ms']} ms")
        res.absolute["settle_after_api"] = settle()
        run_pgbench(
            pbase=fx.pbase,
            nposts=fx.nposts,
            ubase=id_base(10**9),
            nusers=10**9,
            clients=CONCURRENCY,
            seconds=warm,
        )
        pg = fx.pg_max(dur)
        res.absolute["pgbench_max"] = pg
        log(f"pgbench max: {pg['rate']:.0f} tps p50 {pg['p50_ms']} ms p99 {pg['p99_ms']} ms")
        res.absolute["settle_after_pgbench"] = settle()
        half = api["rate"] / 2
        api_h = fx.api_open_loop(half, dur)
        res.absolute["api_half_load"] = api_h
        log(f"API at {half:.0f}/s: p50 {api_h['p50_ms']} p99 {api_h['p99_ms']} ms")
        res.absolute["settle_after_api_half"] = settle()
        pg_h = fx.pg_open_loop(half, dur)
        res.absolute["pgbench_half_load"] = pg_h
        log(f"pgbench at {half:.0f}/s: p50 {pg_h['p50_ms']} p99 {pg_h['p99_ms']} ms")
        prof = None
        try:
            settle(timeout=30)
            prof = profile_api(fx, 4.0 if quick else 8.0)
            res.absolute["api_profile"] = prof
        except Exception as e:  # diagnostic only
            res.notes.append(f"API profile not taken: {e}")
        r = ratio(api["rate"], pg["rate"])
        res.metrics.append(
            Metric(
                label="likes/s at 16 clients",
                ours=api["rate"],
                limit=pg["rate"],
                unit="likes/s",
                ratio=r,
                goal="≥ 1.0x pgbench",
                met=r is not None and r >= 1.0,
                ours_text=f"{api['rate']:,.0f} likes/s (p50 {fmt(api['p50_ms'])} ms, "
                f"p99 {fmt(api['p99_ms'])} ms)",
                limit_text=f"pgbench same tx: {pg['rate']:,.0f} tps (p50 {fmt(pg['p50_ms'])} ms, "
                f"p99 {fmt(pg['p99_ms'])} ms)",
            )
        )
        p99 = api_h["p99_ms"]
        res.metrics.append(
            Metric(
                label=f"p99 at half load ({half:,.0f}/s)",
                ours=p99,
                limit=pg_h["p99_ms"],
                unit="ms",
                ratio=ratio(p99, pg_h["p99_ms"]),
                goal="p99 ≤ 25 ms",
                met=p99 is not None and p99 <= 25.0,
                ours_text=f"p99 {fmt(p99)} ms (p50 {fmt(api_h['p50_ms'])} ms)",
                limit_text=f"pgbench -R {half:,.0f}: p99 {fmt(pg_h['p99_ms'])} ms "
                f"(p50 {fmt(pg_h['p50_ms'])} ms)",
            )
        )
        res.notes.append("Where the time goes: " + _where_time_goes(api, pg, prof))
        if api["non2xx"] or api["socket_errors"]:
            res.notes.append(
                f"API run had {api['non2xx']} non-2xx and {api['socket_errors']} socket errors"
            )
        res.notes.append(
            "Both runs also feed the live CDC pipeline (Debezium, flows) on the same 2 cores; "
            "the pipeline is drained between phases."
        )
    finally:
        fx.cleanup()
    return res


def bench_hot_post(ctx: Ctx) -> Result:
    quick = ctx.quick
    dur = 5.0 if quick else 15.0
    res = Result("hot_post", quick)
    fx = Fixture(quick)
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
        fx.wrk.run(settings().api_url, connections=CONCURRENCY, seconds=2.0)
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
            "api_uniform": api_u,
            "api_hot": api_h,
            "pgbench_uniform": pg_u,
            "pgbench_hot": pg_h,
        }
        ra = ratio(api_h["rate"], api_u["rate"])
        rp = ratio(pg_h["rate"], pg_u["rate"])
        log(f"hot/uniform: API {fmt(ra)}, pgbench {fmt(rp)}")
        res.metrics.append(
            Metric(
                label="hot_post",
                ours=api_h["rate"],
                limit=api_u["rate"],
                unit="likes/s",
                ratio=ra,
                goal="API hot/uniform ≥ 0.95x",
                met=ra is not None and ra >= 0.95,
                ours_text=f"API, 50% on one post: {api_h['rate']:,.0f} likes/s "
                f"(p99 {fmt(api_h['p99_ms'])} ms)",
                limit_text=f"API uniform {api_u['rate']:,.0f} likes/s (p99 "
                f"{fmt(api_u['p99_ms'])} ms); pgbench hot/uniform {fmt(rp)}x "
                f"({pg_h['rate']:,.0f}/{pg_u['rate']:,.0f} tps)",
            )
        )
        unchanged = api_h["unchanged (already liked)"]
        if unchanged:
            res.notes.append(
                f"{unchanged:.0f} hot-run likes hit an already-liked edge "
                "(no outbox row; an extra SELECT)"
            )
    finally:
        fx.cleanup()
    return res
