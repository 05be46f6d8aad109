"""Open-loop like/unlike load from several client processes, so the generator keeps up.

One asyncio process sharing these 2 cores with the whole stack offers a few hundred
requests per second on schedule; :class:`ClientPool` keeps spawned client processes
(each with users of its own) and splits a step's rate over as many as it needs. Each
runs :func:`bench.open_loop.open_loop` (latency from the scheduled time, so a stall is
not hidden) with :class:`LikeUnlikeMix`, and reports its :class:`ClientStep`. The
processes stay up between steps, so their start-up is not counted in any step's CPU.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from bench.fixtures import like_path, make_tokens
from bench.open_loop import OpenLoopResult, open_loop, run_async
from bench.stats import pct

PER_CLIENT_RATE = 250.0  # requests/s one client process is asked to offer at most
USERS_PER_CLIENT = 20_000


class LikeUnlikeMix:
    """A like of a random post by a random user, or (``unlike_share`` of the requests)
    an unlike of an edge this client liked earlier."""

    def __init__(self, posts: list[int], tokens: list[str], unlike_share: float, seed: int):
        self.posts, self.tokens, self.unlike_share = posts, tokens, unlike_share
        self.rng = random.Random(seed)
        self.liked: list[tuple[int, int]] = []  # (post, user index), liked and not unliked

    def __call__(self) -> tuple[str, str, str]:
        """``(method, path, token)`` of the next request."""
        rng = self.rng
        if self.liked and rng.random() < self.unlike_share:
            i = rng.randrange(len(self.liked))
            self.liked[i], self.liked[-1] = self.liked[-1], self.liked[i]
            post, user = self.liked.pop()
            return "DELETE", like_path(post), self.tokens[user]
        post, user = rng.choice(self.posts), rng.randrange(len(self.tokens))
        self.liked.append((post, user))
        return "POST", like_path(post), self.tokens[user]


@dataclass(frozen=True)
class ClientSpec:
    """What one client process sends: posts, its own users, the mix."""

    api_url: str
    posts: list[int]
    first_user: int
    users: int
    unlike_share: float
    seed: int


@dataclass(frozen=True)
class ClientStep:
    """What one client process saw in one step."""

    result: OpenLoopResult
    wall_s: float  # from its first request to the last answer (or give-up)


def _serve(conn: Connection, spec: ClientSpec) -> None:
    """A client process: ``(rate, seconds)`` commands until ``None``."""
    users = list(range(spec.first_user, spec.first_user + spec.users))
    make = LikeUnlikeMix(spec.posts, make_tokens(users), spec.unlike_share, spec.seed)
    conn.send("ready")
    while (cmd := conn.recv()) is not None:
        rate, seconds = cmd
        t0 = time.monotonic()
        r = run_async(open_loop(spec.api_url, rate, seconds, make))
        conn.send(ClientStep(r, time.monotonic() - t0))


@dataclass
class StepLoad:
    """What the client processes together offered and got acknowledged in one step."""

    offered_rate: float
    clients: int
    seconds: float
    sent: int = 0
    acked: int = 0  # 2xx answers
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    send_lag_p99_ms: float | None = None  # the generator's own lateness

    @property
    def acked_rate(self) -> float:
        """Acknowledged requests per second, until the last answer came."""
        return self.acked / self.wall_s if self.wall_s else 0.0

    def add(self, part: ClientStep) -> None:
        """Merge one client's figures."""
        r = part.result
        self.sent += r.sent
        self.acked += len(r.latencies_ms)
        self.wall_s = max(self.wall_s, part.wall_s)
        self.latencies_ms.extend(r.latencies_ms)
        for code, n in r.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        self.errors += r.errors


class ClientPool:
    """Client processes with disjoint users, started on demand and kept for later steps."""

    def __init__(self, api_url: str, posts: list[int], first_user: int, unlike_share: float):
        self.api_url, self.posts = api_url, posts
        self.first_user, self.unlike_share = first_user, unlike_share
        self.procs: list[tuple[BaseProcess, Connection]] = []

    @staticmethod
    def needed(rate: float) -> int:
        """Client processes for ``rate`` requests per second."""
        return max(1, math.ceil(rate / PER_CLIENT_RATE))

    def ensure(self, n: int) -> None:
        """Start client processes until there are ``n``; wait until each is ready."""
        ctx = get_context("spawn")
        new = []
        for i in range(len(self.procs), n):
            spec = ClientSpec(
                self.api_url,
                self.posts,
                self.first_user + i * USERS_PER_CLIENT,
                USERS_PER_CLIENT,
                self.unlike_share,
                seed=1000 + i,
            )
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, spec), daemon=True)
            proc.start()
            new.append((proc, parent))
        for proc, conn in new:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError(f"load client {proc.pid} did not start")
        self.procs += new

    def pids(self) -> dict[int, str]:
        """PID -> CPU category (``loadgen``) of every client process."""
        return {p.pid: "loadgen" for p, _ in self.procs if p.pid is not None}

    def run(self, rate: float, seconds: float) -> StepLoad:
        """Offer ``rate`` requests/s for ``seconds``, split over :meth:`needed` clients
        (call :meth:`ensure` first, so no process starts during the step)."""
        n = self.needed(rate)
        self.ensure(n)
        out = StepLoad(rate, n, seconds)
        conns = [c for _, c in self.procs[:n]]
        for c in conns:
            c.send((rate / n, seconds))
        lags: list[float] = []
        for c in conns:
            part: ClientStep = c.recv()
            out.add(part)
            lags.extend(part.result.send_lags_ms)
        out.send_lag_p99_ms = pct(lags, 99)
        return out

    def close(self) -> None:
        """Stop every client process."""
        for proc, conn in self.procs:
            with contextlib.suppress(OSError):
                conn.send(None)
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        self.procs.clear()
