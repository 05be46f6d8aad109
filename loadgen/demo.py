"""``make demo``: a realistic workload against the running system, then what users see.

Many users, Zipf post popularity, one viral post, unlikes and client retries with the
same Idempotency-Key go through the HTTP API (one aiohttp client process by default,
about 300 µs of CPU per request; ``--processes`` for more). Then it
prints what the system did, from its own metrics (likes applied per second, events per
second through each flow, freshness, CDC and flow lag), what the load generator cost (its
CPU per request: it shares the machine's cores with the system), what a feed service
reads from Redis, what an analyst gets from ClickHouse, and the drift check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import time

import redis

from core.settings import CommonSettings
from devstack.components import FLOW_NAMES
from loadgen.parallel import run_parallel
from loadgen.workload import Workload, WorkloadResult, register_posts
from ops.analytics import query
from ops.drift import measure
from ops.flow_status import wait_drained
from ops.system_figures import SETTLE_S, SystemFigures
from ops.system_figures import measure as system_figures
from schemas.redis_keys import HOT_KEY, TRENDING_KEY, count_key

DRAIN_S = 120.0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the client processes)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}/s"


def print_system(f: SystemFigures, drained: float | None) -> None:
    """The system's own figures over the workload."""
    print(
        "\nthe system, from its own metrics (Prometheus; rates per second of the "
        f"{f.busy_s:.1f} s of load):"
    )
    if f.unavailable:
        print(f"  unavailable: {f.unavailable}")
        return
    print(
        f"  applied by the API: {_rate(f.applied_per_s)} like/unlike requests "
        f"({_rate(f.changed_per_s)} changed an edge: one event each)"
    )
    flows = ", ".join(f"{name} {_rate(v)}" for name, v in f.flow_events_per_s.items())
    print(f"  events through the flows: {flows or 'n/a'}")
    print(
        f"  freshness (outbox commit to Redis count): p50 {_ms(f.freshness_p50_s)}, "
        f"p99 {_ms(f.freshness_p99_s)}"
    )
    lags = ", ".join(f"{name} {v:,.0f}" for name, v in f.flow_lag_max.items())
    done = (
        f"not in {DRAIN_S:.0f} s" if drained is None else f"{drained:.1f} s after the last answer"
    )
    print(
        f"  lag: CDC at most {_ms(f.cdc_lag_max_s)}; flows at most {lags or 'n/a'} "
        f"messages; every flow drained {done}"
    )


def print_client(res: WorkloadResult, processes: int, cpu_s: float) -> None:
    """What the load generator saw and cost."""
    print(
        f"\nload generator: {res.ops:,} requests from {processes} "
        f"process{'es' if processes > 1 else ''} in "
        f"{res.seconds:.1f} s ({res.ops / res.seconds:,.0f}/s), "
        f"p50 {_percentile(res.latencies_ms, 50):.1f} ms, "
        f"p99 {_percentile(res.latencies_ms, 99):.1f} ms; {res.replayed} retries replayed, "
        f"errors {res.errors or 'none'}"
    )
    cores = cpu_s / res.seconds if res.seconds else 0.0
    print(
        f"  its own CPU: {cpu_s / max(1, res.ops) * 1e6:,.0f} µs per request, "
        f"{cores:.2f} of this machine's {os.cpu_count()} cores, taken from the system"
    )


def main() -> None:
    """Drive the workload and print what the system did and what each kind of user sees."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--operations", type=int, default=10_000)
    ap.add_argument("--posts", type=int, default=300)
    ap.add_argument("--processes", type=int, default=1, help="client processes")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight, in all")
    a = ap.parse_args()
    s = CommonSettings()
    base = random.randrange(10**12, 2**62)
    posts = list(range(base, base + a.posts))
    secret = s.jwt_secret.get_secret_value()
    asyncio.run(register_posts(s.api_url, secret, posts, author=base))
    print(f"registered {len(posts)} posts; post {posts[0]} will go viral")
    w = Workload(posts=posts, operations=a.operations, concurrency=a.concurrency)
    started, cpu0 = time.time(), _cpu_s()
    res = run_parallel(s.api_url, secret, w, processes=a.processes)
    cpu_s = _cpu_s() - cpu0
    drained = wait_drained(s, FLOW_NAMES, DRAIN_S)
    time.sleep(SETTLE_S)
    print_system(system_figures(s, started, time.time(), res.seconds), drained)
    print_client(res, a.processes, cpu_s)
    r = redis.Redis.from_url(s.redis_url, decode_responses=True)
    top = posts[:5]
    counts = r.mget([count_key(p) for p in top])
    print("\nfeed service (Redis MGET likes:count:*):")
    for p, c in zip(top, counts, strict=True):
        print(f"  post {p}: {c if c is not None else 0!s} likes")
    print("  hot:", r.zrevrange(HOT_KEY, 0, 4, withscores=True))
    print("  trending:", r.zrevrange(TRENDING_KEY, 0, 4))
    cols, rows = query(
        s,
        "SELECT post_id, sum(likes) AS likes, sum(unlikes) AS unlikes, "
        f"sum(net) AS net FROM likes.post_like_windows WHERE post_id >= {base} "
        f"AND post_id < {base + a.posts} GROUP BY post_id "
        "ORDER BY likes DESC LIMIT 5",
    )
    print("\nanalyst (ClickHouse likes.post_like_windows, top posts):")
    print("  " + "\t".join(cols))
    for row in rows:
        print("  " + "\t".join(str(v) for v in row))
    report = measure(s, posts)
    print(f"\ndrift against the edge store: {report.summary()}")


if __name__ == "__main__":
    main()
