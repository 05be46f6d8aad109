"""The freshness measurement: probe likes under a sustained open-loop load.

Every 100 ms a probe likes one of a few fresh probe posts as a fresh user; a poller reads
the probe posts' counts in the live Redis every 5 ms until each probe's like is
reflected, and the floor probe's keys in the benchmark's own Redis db. Times are
``time.monotonic()``; freshness counts from the API's acknowledgement (the commit
happened before it) to the first poll that sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from bench.cpu import cpu_delta, cpu_per_op, cpu_snapshot
from bench.fixtures import like_path
from bench.freshness_probes import FloorProbe, TopicWatch
from bench.open_loop import MakeRequest, RawHttp, open_loop
from bench.stats import pct
from core.settings import CommonSettings
from schemas.redis_keys import count_key

PROBE_INTERVAL_S = 0.1
POLL_S = 0.005


@dataclass
class Probe:
    """One probe like: sent, acknowledged, seen in Redis."""

    post: int
    expected: int  # the post's count once this like is applied
    t_send: float
    key: bytes  # its event's Kafka key
    t_ack: float | None = None
    t_seen: float | None = None
    ok: bool = True


@dataclass(frozen=True)
class Quantiles:
    """Nearest-rank percentiles of a list of milliseconds."""

    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    n: int

    @staticmethod
    def of(values: list[float]) -> Quantiles:
        """The percentiles of ``values``."""
        return Quantiles(
            pct(values, 50),
            pct(values, 90),
            pct(values, 99),
            max(values, default=None),
            len(values),
        )


@dataclass(frozen=True)
class Load:
    """What the background load achieved."""

    target_rate: float
    achieved_rate: float
    statuses: dict[int, int]
    errors: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Freshness:
    """Everything the freshness benchmark measured."""

    load: Load
    cpu_s_during_load: dict[str, float]
    cpu_us_per_like_during_load: dict[str, float]
    probes: int
    probes_ok: int
    probes_never_seen: int
    freshness_from_ack_ms: Quantiles
    freshness_from_send_ms: Quantiles
    split_ack_to_kafka_ms: Quantiles
    split_kafka_to_redis_ms: Quantiles
    floor_ms: Quantiles


@dataclass
class ProbeUsers:
    """Fresh users for the probes, one per probe like."""

    tokens: list[str]
    ids: list[int]


@dataclass
class Prober:
    """The probe likes, the floor messages, and the poller that sees both."""

    posts: list[int]
    users: ProbeUsers
    floor: FloorProbe
    floor_url: str
    watch: TopicWatch
    probes: list[Probe] = field(default_factory=list)
    floors: dict[str, list[float]] = field(default_factory=dict)  # key -> [sent, seen]
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def _probe(self, http: RawHttp, post: int, expected: int, token: str, user: int) -> None:
        p = Probe(post, expected, time.monotonic(), key=f"{post}:{user}".encode())
        self.watch.keys.add(p.key)
        self.probes.append(p)
        try:
            status, body = await http.request("POST", like_path(post), token)
            p.t_ack = time.monotonic()
            p.ok = status == 200 and bool(json.loads(body).get("changed"))
        except Exception:
            p.ok = False

    async def probe_loop(self, api_url: str) -> None:
        """A probe like (and a floor message) every interval until ``done``."""
        http = RawHttp(api_url, max_conns=8)
        counts = dict.fromkeys(self.posts, 0)
        users = iter(zip(self.users.tokens, self.users.ids, strict=True))
        t_next = time.monotonic()
        for post in itertools.cycle(self.posts):
            if self.done.is_set():
                break
            fkey = f"bench:floor:{uuid.uuid4().hex}"
            self.floors[fkey] = [time.monotonic()]
            self.floor.send(fkey)
            await self._probe(http, post, counts[post] + 1, *next(users))
            counts[post] += self.probes[-1].ok
            t_next += PROBE_INTERVAL_S
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
        await http.close()

    async def _poll_live(self, live: aioredis.Redis) -> list[Probe]:
        pend = [p for p in self.probes if p.ok and p.t_seen is None and p.t_ack is not None]
        posts = sorted({p.post for p in pend})
        if posts:
            vals = await live.mget([count_key(p) for p in posts])
            t = time.monotonic()
            cur = {p: int(v) if v is not None else 0 for p, v in zip(posts, vals, strict=True)}
            for p in pend:
                if cur[p.post] >= p.expected:
                    p.t_seen = t
        return pend

    async def _poll_floor(self, flo: aioredis.Redis) -> list[str]:
        fpend = [k for k, v in self.floors.items() if len(v) == 1]
        if fpend:
            vals = await flo.mget(fpend)
            t = time.monotonic()
            for k, v in zip(fpend, vals, strict=True):
                if v is not None:
                    self.floors[k].append(t)
        return fpend

    async def poll_loop(self, live_url: str) -> None:
        """Poll both until ``done`` and nothing is pending."""
        live = aioredis.Redis.from_url(live_url)
        flo = aioredis.Redis.from_url(self.floor_url)
        try:
            while True:
                pend, fpend = await self._poll_live(live), await self._poll_floor(flo)
                if self.done.is_set() and not pend and not fpend:
                    return
                await asyncio.sleep(POLL_S)
        finally:
            await live.aclose()
            await flo.aclose()

    def summary(self, load: Load, cpu: dict[str, float], likes: int) -> Freshness:
        """The measured times, split where the topic watch saw the events."""
        good = [p for p in self.probes if p.ok and p.t_ack is not None]
        seen = [p for p in good if p.t_seen is not None]
        on_topic = [p for p in good if p.key in self.watch.seen]
        return Freshness(
            load=load,
            cpu_s_during_load=cpu,
            cpu_us_per_like_during_load=cpu_per_op(cpu, likes),
            probes=len(self.probes),
            probes_ok=len(good),
            probes_never_seen=len(good) - len(seen),
            freshness_from_ack_ms=Quantiles.of([_ms(p.t_seen, p.t_ack) for p in seen]),
            freshness_from_send_ms=Quantiles.of([_ms(p.t_seen, p.t_send) for p in seen]),
            split_ack_to_kafka_ms=Quantiles.of(
                [_ms(self.watch.seen[p.key], p.t_ack) for p in on_topic]
            ),
            split_kafka_to_redis_ms=Quantiles.of(
                [_ms(p.t_seen, self.watch.seen[p.key]) for p in on_topic if p.t_seen is not None]
            ),
            floor_ms=Quantiles.of([_ms(v[1], v[0]) for v in self.floors.values() if len(v) == 2]),
        )


def _ms(later: float | None, earlier: float | None) -> float:
    assert later is not None and earlier is not None
    return (later - earlier) * 1000


@contextlib.asynccontextmanager
async def probing(prober: Prober) -> AsyncIterator[None]:
    """The probes and the poller run while inside; on leaving, the probes stop and the
    poller gets up to 15 s to see the last ones."""
    s = CommonSettings()
    poll_task = asyncio.create_task(prober.poll_loop(s.redis_url))
    probe_task = asyncio.create_task(prober.probe_loop(s.api_url))
    try:
        yield
    finally:
        prober.done.set()
        await probe_task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(poll_task, timeout=15)


async def measure(prober: Prober, rate: float, seconds: float, make: MakeRequest) -> Freshness:
    """Sustain the load for ``seconds`` with the probes running; then wait for the probes."""
    async with probing(prober):
        c0 = cpu_snapshot()
        r = await open_loop(CommonSettings().api_url, rate, seconds, make)
        c1 = cpu_snapshot()
    load = Load(rate, round(r.achieved_rate, 1), r.statuses, r.errors, r.p(50), r.p(99))
    return prober.summary(load, cpu_delta(c0, c1), r.sent + len(prober.probes))
