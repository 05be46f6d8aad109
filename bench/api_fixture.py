"""Fresh posts and users for one API benchmark, and its phases: the API and pgbench,
each at full speed (closed loop) and at a fixed rate (open loop), with CPU accounting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.api_metrics import like_sums
from bench.cpu import busy_share, cpu_delta, cpu_per_op, cpu_snapshot
from bench.fixtures import id_base, make_tokens, register_posts
from bench.log import log
from bench.open_loop import like_requests, open_loop, run_async
from bench.pgbench_like import PgbenchLoad, run_pgbench
from bench.stats import pct
from bench.wrk import WrkLoad
from core.settings import CommonSettings

CONCURRENCY = 16


@dataclass(frozen=True)
class ApiMax:
    """wrk at ``CONCURRENCY`` connections: the API's max like rate."""

    rate: float
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    server_mean_ms: float | None
    changed: float
    unchanged_already_liked: float
    cpu_s: dict[str, float]
    cpu_us_per_like: dict[str, float]
    machine_busy: float


@dataclass(frozen=True)
class PgMax:
    """pgbench at ``CONCURRENCY`` clients: the same transaction's max rate."""

    rate: float
    transactions: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    cpu_s: dict[str, float]
    cpu_us_per_like: dict[str, float]
    machine_busy: float


@dataclass(frozen=True)
class OpenLoop:
    """A fixed request rate (open loop), latency from the schedule."""

    target_rate: float
    achieved_rate: float
    p50_ms: float | None
    p99_ms: float | None
    ok: int | None = None
    statuses: dict[int, int] | None = None
    errors: int | None = None
    max_ms: float | None = None
    generator_p99_send_lag_ms: float | None = None
    generator_max_send_lag_ms: float | None = None


class ApiFixture:
    """Fresh posts and users (ids nobody else uses), registered through the API."""

    def __init__(self, quick: bool) -> None:
        self.nposts = 200 if quick else 1000
        self.nusers = 20_000 if quick else 60_000
        self.pbase = id_base()
        self.posts = [self.pbase + i for i in range(1, self.nposts + 1)]
        self.hot = self.posts[0]
        self.api_url = CommonSettings().api_url
        t0 = time.monotonic()
        register_posts(self.posts, id_base() + 1)
        ubase = id_base()
        self.tokens = make_tokens([ubase + i for i in range(1, self.nusers + 1)])
        self.wrk = WrkLoad(self.tokens, self.posts, hot=self.hot)
        log(f"{self.nposts} posts registered, {self.nusers} tokens ({time.monotonic() - t0:.1f}s)")

    def config(self) -> dict[str, object]:
        """The fixture, for the result's configuration."""
        return {
            "posts": self.nposts,
            "post_id_range": [self.posts[0], self.posts[-1]],
            "api_users (distinct JWTs)": self.nusers,
            "pgbench_users": "random in a fresh range of 10**9 per run",
            "concurrency": CONCURRENCY,
            "idempotency_key": "none (optional header; not sent by wrk or pgbench)",
        }

    def pg_load(self, hot_permille: int = 0) -> PgbenchLoad:
        """pgbench over the same posts, fresh users, ``hot_permille`` on the hot post."""
        return PgbenchLoad(
            pbase=self.pbase,
            nposts=self.nposts,
            ubase=id_base(10**9),
            nusers=10**9,
            clients=CONCURRENCY,
            hot=self.hot if hot_permille else None,
            hot_permille=hot_permille,
        )

    def warm_up(self, seconds: float) -> None:
        """A short wrk run whose figures are dropped."""
        self.wrk.run(self.api_url, connections=CONCURRENCY, seconds=seconds)

    def api_max(self, seconds: float, hot_share: float = 0.0) -> ApiMax:
        """wrk closed loop at CONCURRENCY connections."""
        m0, c0 = like_sums(), cpu_snapshot()
        w = self.wrk.run(
            self.api_url, connections=CONCURRENCY, seconds=seconds, hot_share=hot_share
        )
        c1, m1 = cpu_snapshot(), like_sums()
        cpu, sums = cpu_delta(c0, c1, tool="wrk"), m1 - m0
        return ApiMax(
            rate=w.rate,
            requests=w.requests,
            seconds=w.seconds,
            non2xx=w.non2xx,
            socket_errors=w.socket_errors,
            p50_ms=w.p50_ms,
            p90_ms=w.p90_ms,
            p99_ms=w.p99_ms,
            mean_ms=w.mean_ms,
            server_mean_ms=sums.mean_ms,
            changed=sums.changed,
            unchanged_already_liked=sums.unchanged,
            cpu_s=cpu,
            cpu_us_per_like=cpu_per_op(cpu, w.requests),
            machine_busy=round(busy_share(cpu), 3),
        )

    def pg_max(self, seconds: float, hot_permille: int = 0) -> PgMax:
        """pgbench closed loop at CONCURRENCY clients."""
        c0 = cpu_snapshot()
        r = run_pgbench(self.pg_load(hot_permille), seconds)
        cpu = cpu_delta(c0, cpu_snapshot(), tool="pgbench")
        return PgMax(
            rate=r.tps,
            transactions=r.transactions,
            failed=r.failed,
            p50_ms=r.p50_ms,
            p99_ms=r.p99_ms,
            mean_ms=r.mean_ms,
            cpu_s=cpu,
            cpu_us_per_like=cpu_per_op(cpu, r.transactions),
            machine_busy=round(busy_share(cpu), 3),
        )

    def api_open_loop(self, rate: float, seconds: float) -> OpenLoop:
        """Likes at ``rate`` per second through the API."""
        make = like_requests(self.posts, self.tokens)
        r = run_async(open_loop(self.api_url, rate, seconds, make))
        return OpenLoop(
            target_rate=rate,
            achieved_rate=r.achieved_rate,
            p50_ms=r.p(50),
            p99_ms=r.p(99),
            ok=len(r.latencies_ms),
            statuses=r.statuses,
            errors=r.errors,
            max_ms=max(r.latencies_ms, default=None),
            generator_p99_send_lag_ms=pct(r.send_lags_ms, 99),
            generator_max_send_lag_ms=max(r.send_lags_ms, default=None),
        )

    def pg_open_loop(self, rate: float, seconds: float) -> OpenLoop:
        """The same transaction at ``rate`` per second with pgbench ``-R``."""
        r = run_pgbench(self.pg_load(), seconds, rate=rate)
        return OpenLoop(target_rate=rate, achieved_rate=r.tps, p50_ms=r.p50_ms, p99_ms=r.p99_ms)

    def cleanup(self) -> None:
        """Remove wrk's files."""
        self.wrk.cleanup()
