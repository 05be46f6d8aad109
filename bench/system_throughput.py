"""Benchmark ``system_throughput`` (issue 8): the highest offered rate the whole system
keeps up with, and the CPU each component spends per like.

Through the LIVE stack (API, Postgres, Debezium/Connect, Kafka, every flow, Redis), in
the stack's profile: open-loop like/unlike load at stepped rates from several client
processes (:mod:`bench.load_clients`), with the freshness probes of the ``freshness``
benchmark running (API acknowledgement to the post's count visible in Redis). A step
keeps up when the API's p99 is at most 50 ms, the freshness p99 at most 1 s, at least
95% of the offered rate is acknowledged and no lag grows (CDC's, each flow's, from the
step's start to its end). A step that does not keep up is tried once more (the cores
are shared: one burst of someone else's load should not end the run); the steps stop
at the first rate that does not keep up twice; then
the pipeline drains and every projection of the benchmark's posts is checked exact
(``ops.drift.converge``). CPU per like is counted per process from ``/proc`` for every
member of every component (:mod:`bench.cpu`), members added up per component; also
less what each spends with no load (measured before the steps), since at low rates the
fixed cost of polling and ticking dominates the per-like figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from bench.context import Ctx
from bench.cpu import by_component, cpu_delta, cpu_snapshot
from bench.fixtures import id_base, make_tokens, register_posts
from bench.freshness_measure import Load, Prober, ProbeUsers, probing
from bench.freshness_probes import FloorProbe, TopicWatch
from bench.isolation import isolated_redis_db
from bench.load_clients import ClientPool
from bench.log import log
from bench.open_loop import run_async
from bench.results import Result
from bench.stack_wait import lag_sample, require_live_flow, settle
from bench.system_report import Step, judge, metrics, step_notes
from core.settings import CommonSettings
from devstack.components import FLOW_NAMES
from ops.drift import converge

STEPS = (100, 200, 400, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000)
STEPS_QUICK = (100, 300, 600, 1000, 1500, 2000)
UNLIKE_SHARE = 0.2
PROBE_POSTS_PER_STEP = 10


@dataclass(frozen=True)
class _Plan:
    steps: tuple[int, ...]
    seconds: float
    warmup_s: float
    posts: int
    drain_timeout_s: float
    idle_s: float


@dataclass
class _Env:
    """What every step shares: the clients, the probes' side channels, the posts."""

    pool: ClientPool
    floor: FloorProbe
    floor_url: str
    watch: TopicWatch
    probe_posts: list[list[int]]  # fresh probe posts per step
    probe_users: list[ProbeUsers]  # fresh probe users per step
    idle: dict[str, float] = field(default_factory=dict)  # cores per category, no load


def _plan(quick: bool) -> _Plan:
    if quick:
        return _Plan(STEPS_QUICK, 10.0, 3.0, 300, 180.0, 5.0)
    return _Plan(STEPS, 30.0, 5.0, 1000, 300.0, 15.0)


def _probe_users(n: int) -> ProbeUsers:
    base = id_base()
    ids = [base + i for i in range(1, n + 1)]
    return ProbeUsers(make_tokens(ids), ids)


@contextmanager
def _environment(plan: _Plan, posts: list[int]) -> Iterator[_Env]:
    pbase = id_base()
    probe_posts = [
        [pbase + k * PROBE_POSTS_PER_STEP + i for i in range(1, PROBE_POSTS_PER_STEP + 1)]
        for k in range(2 * len(plan.steps))  # each step may be tried twice
    ]
    register_posts([p for ps in probe_posts for p in ps], id_base() + 3)
    users = [_probe_users(int(plan.seconds * 12) + 100) for _ in probe_posts]
    pool = ClientPool(CommonSettings().api_url, posts, id_base(10**8), UNLIKE_SHARE)
    with isolated_redis_db() as floor_url:
        floor, watch = FloorProbe(floor_url), TopicWatch()
        try:
            yield _Env(pool, floor, floor_url, watch, probe_posts, users)
        finally:
            pool.close()
            floor.close()
            watch.close()


async def _measure(env: _Env, k: int, rate: float, seconds: float) -> Step:
    """One step: the load, the probes, lag at start and end, CPU over the load."""
    prober = Prober(env.probe_posts[k], env.probe_users[k], env.floor, env.floor_url, env.watch)
    lag0 = await asyncio.to_thread(lag_sample)
    async with probing(prober):
        c0 = cpu_snapshot(env.pool.pids())
        load = await asyncio.to_thread(env.pool.run, rate, seconds)
        c1 = cpu_snapshot(env.pool.pids())
        lag1 = await asyncio.to_thread(lag_sample)
    cpu = by_component(cpu_delta(c0, c1))
    summary = Load(rate, round(load.acked_rate, 1), load.statuses, load.errors, None, None)
    fresh = prober.summary(summary, cpu, load.acked + len(prober.probes))
    return Step.of(load, fresh, (lag0, lag1), cpu, env.idle, c1.wall - c0.wall)


def _idle(env: _Env, seconds: float) -> dict[str, float]:
    """Cores each category uses with no load (the flows poll, Connect and Kafka tick)."""
    settle(timeout=90)
    a = cpu_snapshot(env.pool.pids())
    time.sleep(seconds)
    b = cpu_snapshot(env.pool.pids())
    wall = b.wall - a.wall
    return {k: round(v / wall, 4) for k, v in by_component(cpu_delta(a, b)).items()}


def _steps(env: _Env, plan: _Plan) -> list[Step]:
    log(f"system_throughput: warm-up {plan.warmup_s:.0f}s at {plan.steps[0]}/s")
    env.pool.ensure(ClientPool.needed(plan.steps[0]))
    env.pool.run(plan.steps[0], plan.warmup_s)
    env.idle = _idle(env, plan.idle_s)
    log(f"system_throughput: idle cores {env.idle}")
    out: list[Step] = []
    for rate in plan.steps:
        for attempt in (1, 2):
            settle(timeout=90)
            env.pool.ensure(ClientPool.needed(rate))
            log(f"system_throughput: {plan.seconds:.0f}s at {rate}/s (attempt {attempt})")
            step = judge(run_async(_measure(env, len(out), rate, plan.seconds)))
            step.attempt = attempt
            log("system_throughput: " + step_notes([step])[0])
            out.append(step)
            if step.keeps_up:
                break
        if not step.keeps_up:
            break
    return out


def _drain(posts: list[int], timeout: float) -> dict[str, object]:
    t0 = time.monotonic()
    report = converge(CommonSettings(), posts, timeout=timeout)
    waited = round(time.monotonic() - t0, 1)
    log(f"system_throughput: after {waited}s drain: {report.summary()}")
    return {"exact": report.clean, "waited_s": waited, "report": report.summary()}


def bench_system_throughput(ctx: Ctx) -> Result:
    """Stepped open-loop load through the live system until a step does not keep up."""
    plan = _plan(ctx.quick)
    res = Result("system_throughput", ctx.quick)
    for flow in FLOW_NAMES:
        require_live_flow(f"flow-{flow}")
    posts_base = id_base()
    posts = [posts_base + i for i in range(1, plan.posts + 1)]
    register_posts(posts, posts_base + plan.posts + 1)
    res.config = {
        **asdict(plan),
        "profile": CommonSettings().profile,
        "load": f"open loop, like/unlike ({UNLIKE_SHARE:.0%} unlikes of edges the client "
        "liked), uniform over fresh posts, distinct users per client process",
        "keeps_up": "API p99 ≤ 50 ms, freshness p99 ≤ 1 s (every probe seen), ≥ 95% of "
        "the offered rate acknowledged, no lag grows (CDC > 1 s, a flow > 1 s of "
        "the offered rate or 200 events); a step that misses is tried once more",
        "freshness": "probe likes every 100 ms on fresh posts, API ack to Redis count",
    }
    with _environment(plan, posts) as env:
        steps = _steps(env, plan)
        all_posts = posts + [p for ps in env.probe_posts for p in ps]
    exact = _drain(all_posts, plan.drain_timeout_s)
    res.absolute = {"idle_cores": env.idle, "steps": [asdict(s) for s in steps], "drain": exact}
    res.metrics += metrics(steps, exact)
    res.notes += step_notes(steps)
    ctx.system_max_rate = res.metrics[0].ours or None  # freshness runs at half of it
    return res
