"""Benchmark 5 (``freshness``): API commit to ``likes:count:{post}`` visible in Redis.

Through the LIVE stack (API, Postgres, Debezium, Kafka, the running ``flow-counts``),
under a sustained open-loop like load at half the API's maximum rate (measured by
``api_vs_pgbench`` in the same run, else by a short wrk run here). Every 100 ms a probe
likes one of a few fresh probe posts as a fresh user; a poller reads the probe posts'
counts every 5 ms until each probe's like is reflected. Freshness is measured from the
API's acknowledgement (the commit happened before it) to the first poll that sees it.

The machine's limit, measured beside it under the same load: the transport floor, i.e.
a message produced to a bench topic (acks=all, linger 5 ms like Connect), consumed by a
consumer that writes a Redis key, seen by the same poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.common import (
    Metric,
    Result,
    cpu_delta,
    cpu_per_op,
    cpu_snapshot,
    create_topic,
    delete_topics,
    fmt,
    id_base,
    isolated_redis_db,
    log,
    make_tokens,
    pct,
    ratio,
    register_posts,
    settings,
    settle,
    stack_pids,
)
from bench.http_load import RawHttp, open_loop, pick_request_factory, run_async


@dataclass
class Probe:
    post: int
    expected: int
    t_send: float
    t_ack: float | None = None
    t_seen: float | None = None
    ok: bool = True
    key: bytes = b""


class FloorProbe:
    """Kafka produce -> consume -> Redis SET, in a thread; the poller sees the key."""

    def __init__(self, redis_url: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

        self.topic = f"bench.floor.{os.getpid()}.{uuid.uuid4().hex[:10]}"
        create_topic(self.topic, 1)
        b = settings().kafka_bootstrap
        self.producer = Producer(
            {
                "bootstrap.servers": b,
                "linger.ms": 5,
                "acks": "all",
                "compression.type": "lz4",
                "enable.idempotence": True,
            }
        )
        self.consumer = Consumer(
            {
                "bootstrap.servers": b,
                "group.id": "bench-floor-ignored",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])  # fresh topic
        self.redis_url = redis_url
        self.stop = threading.Event()
        self.seen = 0
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()
        # warm up: the first fetches after assignment are not the steady-state floor
        deadline = time.monotonic() + 15
        i = 0
        while self.seen < 5 and time.monotonic() < deadline:
            self.send(f"bench:floor:warmup:{i}")
            i += 1
            time.sleep(0.1)

    def _consume(self) -> None:
        import redis

        r = redis.Redis.from_url(self.redis_url)
        while not self.stop.is_set():
            m = self.consumer.poll(0.05)
            if m is None or m.error() is not None:
                continue
            r.set(m.key(), b"1", ex=600)
            self.seen += 1
        r.close()

    def send(self, key: str) -> None:
        self.producer.produce(self.topic, key=key.encode(), value=b"x")
        self.producer.poll(0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.producer.flush(5)
        self.consumer.close()
        delete_topics([self.topic])


class TopicWatch:
    """When each probe's event appears on the live events topic (splits CDC from flow)."""

    def __init__(self) -> None:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        s = settings()
        self.consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": "bench-watch-ignored",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        md = self.consumer.list_topics(s.events_topic, timeout=10).topics[s.events_topic]
        self.consumer.assign([TopicPartition(s.events_topic, p, OFFSET_END) for p in md.partitions])
        self.keys: set[bytes] = set()
        self.seen: dict[bytes, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        time.sleep(1.0)  # let the first fetches position at the end

    def _run(self) -> None:
        while not self.stop.is_set():
            for m in self.consumer.consume(500, 0.05):
                if m.error() is None and m.key() in self.keys and m.key() not in self.seen:
                    self.seen[m.key()] = time.monotonic()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.consumer.close()


async def _measure(
    rate: float,
    seconds: float,
    load_posts: list[int],
    load_tokens: list[str],
    probe_posts: list[int],
    probe_tokens: list[str],
    probe_users: list[int],
    floor: FloorProbe,
    floor_url: str,
    watch: TopicWatch,
) -> dict[str, Any]:
    import redis.asyncio as aioredis

    s = settings()
    live = aioredis.Redis.from_url(s.redis_url)
    flo = aioredis.Redis.from_url(floor_url)
    http = RawHttp(s.api_url, max_conns=8)
    probes: list[Probe] = []
    floors: dict[str, list[float | None]] = {}  # key -> [t_send, t_seen]
    counts = dict.fromkeys(probe_posts, 0)
    tokens = iter(zip(probe_tokens, probe_users, strict=True))
    done = asyncio.Event()
    interval = 0.1

    async def probe_loop() -> None:
        rr = itertools.cycle(probe_posts)
        t_next = time.monotonic()
        while not done.is_set():
            post = next(rr)
            fkey = f"bench:floor:{uuid.uuid4().hex}"
            floors[fkey] = [time.monotonic(), None]
            floor.send(fkey)
            counts[post] += 1
            token, user = next(tokens)
            p = Probe(post, counts[post], time.monotonic(), key=f"{post}:{user}".encode())
            watch.keys.add(p.key)
            probes.append(p)
            try:
                status, body = await http.request("POST", f"/v1/posts/{post}/like", token)
                p.t_ack = time.monotonic()
                if status != 200 or not json.loads(body).get("changed"):
                    p.ok = False
                    counts[post] -= 1
            except Exception:
                p.ok = False
                counts[post] -= 1
            t_next += interval
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))

    async def poller() -> None:
        while True:
            pend = [p for p in probes if p.ok and p.t_seen is None and p.t_ack is not None]
            fpend = [k for k, v in floors.items() if v[1] is None]
            if done.is_set() and not pend and not fpend:
                return
            now_posts = sorted({p.post for p in pend})
            if now_posts:
                vals = await live.mget([f"likes:count:{p}" for p in now_posts])
                t = time.monotonic()
                cur = {
                    p: int(v) if v is not None else 0 for p, v in zip(now_posts, vals, strict=True)
                }
                for p in pend:
                    if cur[p.post] >= p.expected:
                        p.t_seen = t
            if fpend:
                vals = await flo.mget(fpend)
                t = time.monotonic()
                for k, v in zip(fpend, vals, strict=True):
                    if v is not None:
                        floors[k][1] = t
            await asyncio.sleep(0.005)

    make = pick_request_factory(load_posts, load_tokens)
    poll_task = asyncio.create_task(poller())
    probe_task = asyncio.create_task(probe_loop())
    c0 = cpu_snapshot()
    load = await open_loop(s.api_url, rate, seconds, make)
    c1 = cpu_snapshot()
    done.set()
    await probe_task
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(poll_task, timeout=15)
    await http.close()
    await live.aclose()
    await flo.aclose()
    good = [p for p in probes if p.ok and p.t_ack is not None]
    from_ack = [(p.t_seen - p.t_ack) * 1000 for p in good if p.t_seen is not None]
    from_send = [(p.t_seen - p.t_send) * 1000 for p in good if p.t_seen is not None]
    fl = [(v[1] - v[0]) * 1000 for v in floors.values() if v[1] is not None and v[0] is not None]
    cdc = [(watch.seen[p.key] - p.t_ack) * 1000 for p in good if p.key in watch.seen]
    flow = [
        (p.t_seen - watch.seen[p.key]) * 1000
        for p in good
        if p.key in watch.seen and p.t_seen is not None
    ]
    cpu = cpu_delta(c0, c1)
    return {
        "cpu_s_during_load": cpu,
        "cpu_us_per_like_during_load": cpu_per_op(cpu, load.sent + len(probes)),
        "load": {
            "target_rate": rate,
            "achieved_rate": round(load.achieved_rate, 1),
            "statuses": load.statuses,
            "errors": load.errors,
            "p50_ms": pct(load.latencies_ms, 50),
            "p99_ms": pct(load.latencies_ms, 99),
        },
        "probes": len(probes),
        "probes_ok": len(good),
        "probes_never_seen": sum(1 for p in good if p.t_seen is None),
        "freshness_from_ack_ms": {
            "p50": pct(from_ack, 50),
            "p90": pct(from_ack, 90),
            "p99": pct(from_ack, 99),
            "max": max(from_ack, default=None),
        },
        "freshness_from_send_ms": {"p50": pct(from_send, 50), "p99": pct(from_send, 99)},
        "split_ack_to_kafka_ms": {"p50": pct(cdc, 50), "p99": pct(cdc, 99), "n": len(cdc)},
        "split_kafka_to_redis_ms": {"p50": pct(flow, 50), "p99": pct(flow, 99), "n": len(flow)},
        "floor_ms": {
            "p50": pct(fl, 50),
            "p90": pct(fl, 90),
            "p99": pct(fl, 99),
            "max": max(fl, default=None),
            "n": len(fl),
        },
    }


def _api_max_rate(ctx: Any, posts: list[int], tokens: list[str]) -> float:
    if ctx.api_max_rate:
        return float(ctx.api_max_rate)
    from bench.http_load import WrkLoad

    w = WrkLoad(tokens, posts)
    try:
        w.run(settings().api_url, connections=16, seconds=2)
        return w.run(settings().api_url, connections=16, seconds=5).rate
    finally:
        w.cleanup()


def bench_freshness(ctx: Any) -> Result:
    quick = ctx.quick
    seconds = 15.0 if quick else 60.0
    res = Result("freshness", quick)
    pids = stack_pids()
    if not pids.get("flow-counts"):
        raise RuntimeError(f"the live flow-counts is not running: {pids}")
    nposts, nusers = (200, 20_000) if quick else (1000, 60_000)
    pbase = id_base()
    load_posts = [pbase + i for i in range(1, nposts + 1)]
    probe_posts = [pbase + nposts + i for i in range(1, 11)]
    register_posts(load_posts + probe_posts, id_base() + 3)
    load_tokens = make_tokens([id_base() + i for i in range(1, nusers + 1)])
    pu = id_base()
    probe_users = [pu + i for i in range(1, int(seconds * 12) + 100)]
    probe_tokens = make_tokens(probe_users)
    settle()
    rate = _api_max_rate(ctx, load_posts, load_tokens) / 2
    res.config = {
        "seconds": seconds,
        "load_rate": round(rate, 1),
        "load": "open loop, uniform over fresh posts, distinct users",
        "probe_interval_ms": 100,
        "probe_posts": len(probe_posts),
        "poll_ms": 5,
        "measured_from": "API acknowledgement (commit precedes it) to first poll "
        "that sees the count",
        "api_max_rate_source": "api_vs_pgbench (same run)"
        if ctx.api_max_rate
        else "short wrk run in this benchmark",
    }
    settle()
    with isolated_redis_db() as floor_url:
        floor = FloorProbe(floor_url)
        watch = TopicWatch()
        try:
            log(f"freshness: {seconds:.0f}s of load at {rate:.0f} likes/s with probes")
            m = run_async(
                _measure(
                    rate,
                    seconds,
                    load_posts,
                    load_tokens,
                    probe_posts,
                    probe_tokens,
                    probe_users,
                    floor,
                    floor_url,
                    watch,
                )
            )
        finally:
            floor.close()
            watch.close()
    res.absolute = m
    f, fl = m["freshness_from_ack_ms"], m["floor_ms"]
    log(
        f"freshness p50 {fmt(f['p50'])} p99 {fmt(f['p99'])} ms; floor p50 {fmt(fl['p50'])} "
        f"p99 {fmt(fl['p99'])} ms"
    )
    missing = m["probes_never_seen"]
    res.metrics.append(
        Metric(
            label="p50",
            ours=f["p50"],
            limit=fl["p50"],
            unit="ms",
            ratio=ratio(f["p50"], fl["p50"]),
            goal="p50 ≤ 300 ms",
            met=f["p50"] is not None and f["p50"] <= 300 and not missing,
            ours_text=f"p50 {fmt(f['p50'])} ms at {rate:,.0f} likes/s",
            limit_text=f"Kafka→consumer→Redis floor p50 {fmt(fl['p50'])} ms",
        )
    )
    res.metrics.append(
        Metric(
            label="p99",
            ours=f["p99"],
            limit=fl["p99"],
            unit="ms",
            ratio=ratio(f["p99"], fl["p99"]),
            goal="p99 ≤ 1 s",
            met=f["p99"] is not None and f["p99"] <= 1000 and not missing,
            ours_text=f"p99 {fmt(f['p99'])} ms (max {fmt(f['max'])} ms)",
            limit_text=f"floor p99 {fmt(fl['p99'])} ms",
        )
    )
    if missing:
        res.notes.append(
            f"{missing} of {m['probes_ok']} probe likes never became visible "
            "within 15 s after the load stopped"
        )
    a, b = m["split_ack_to_kafka_ms"], m["split_kafka_to_redis_ms"]
    res.notes.append(
        f"Split: API ack → event on likes.events (Debezium, poll.interval.ms 100) p50 "
        f"{fmt(a['p50'])} / p99 {fmt(a['p99'])} ms; likes.events → Redis count (flow-counts) "
        f"p50 {fmt(b['p50'])} / p99 {fmt(b['p99'])} ms (seen by a bench consumer, "
        "fetch.wait.max.ms 10)."
    )
    per = ", ".join(f"{k} {v:.0f}" for k, v in m["cpu_us_per_like_during_load"].items())
    res.notes.append(f"CPU µs per like during the sustained load, per component: {per}")
    ld = m["load"]
    res.notes.append(
        f"background load achieved {ld['achieved_rate']:.0f}/s of {rate:.0f}/s "
        f"(API p99 {fmt(ld['p99_ms'])} ms, statuses {ld['statuses']})"
    )
    return res
