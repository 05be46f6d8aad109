"""A realistic like workload through the HTTP API (demo, end-to-end tests, benchmarks).

Many users, Zipf post popularity, one viral post, unlikes, and client retries that reuse
the Idempotency-Key. Every acknowledged response is recorded, so callers can check the
system against what clients were told. A client sends its requests for one edge one after
another (the next waits for the previous answer), as one user's device does: the API does
not order two requests for the same edge that are in flight together (tests/api covers
that case), so only sequential requests give a record whose last answer is the edge's
state.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import httpx

from ingest_api.auth import issue_token
from ingest_api.idempotency import REPLAYED

RETRY_BUDGET_S = 90.0


@dataclass
class WorkloadResult:
    """What the clients saw."""

    ops: int = 0
    acked: int = 0
    retries: int = 0
    transport_retries: int = 0
    replayed: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    final_state: dict[tuple[int, int], bool] = field(default_factory=dict)
    uncertain: set[tuple[int, int]] = field(default_factory=set)  # saw a non-200 answer


@dataclass
class Workload:
    """Parameters of one run."""

    posts: list[int]
    operations: int = 20_000
    users: int = 5_000
    first_user: int = 1  # users are first_user .. first_user + users - 1
    viral_share: float = 0.3
    unlike_share: float = 0.2
    retry_share: float = 0.05
    zipf_s: float = 1.1
    concurrency: int = 32
    seed: int = 42


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (i + 1) ** s for i in range(n)]


async def register_posts(api_url: str, secret: str, posts: list[int], author: int) -> None:
    """Register ``posts`` (idempotent)."""
    headers = {"Authorization": f"Bearer {issue_token(secret, author, scope='posts:write')}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as c:
        for i in range(0, len(posts), 50):
            await asyncio.gather(
                *[
                    c.put(f"/v1/posts/{p}", json={"author_id": author}, headers=headers)
                    for p in posts[i : i + 50]
                ]
            )


@dataclass(frozen=True)
class _Answer:
    status: int
    liked: bool | None  # the 200 answer's edge state
    replayed: bool


async def _send_retrying(
    c: aiohttp.ClientSession, method: str, post: int, headers: dict[str, str], res: WorkloadResult
) -> _Answer:
    """One request; a dropped connection is retried with the same Idempotency-Key for up
    to ``RETRY_BUDGET_S``, as a mobile client would (a 409 meanwhile means the first
    attempt is still in flight, or was cut off with the server that died)."""
    lost = False
    delay = 0.05
    deadline = time.monotonic() + RETRY_BUDGET_S
    while time.monotonic() < deadline:
        try:
            async with c.request(method, f"/v1/posts/{post}/like", headers=headers) as r:
                liked = bool((await r.json())["liked"]) if r.status == 200 else None
                answer = _Answer(r.status, liked, r.headers.get(REPLAYED) == "true")
        except (aiohttp.ClientError, TimeoutError):  # refused, reset, cut off, timed out
            lost = True
            res.transport_retries += 1
        else:
            if not (lost and answer.status == 409):
                return answer
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise RuntimeError(f"{method} like of post {post} kept failing for {RETRY_BUDGET_S:.0f}s")


async def run_workload(api_url: str, secret: str, w: Workload) -> WorkloadResult:
    """Send ``w.operations`` like/unlike requests over ``w.concurrency`` connections;
    return what was acknowledged."""
    rng = random.Random(w.seed)
    weights = _zipf_weights(len(w.posts) - 1, w.zipf_s)
    viral, others = w.posts[0], w.posts[1:]
    tokens: dict[int, str] = {}
    in_flight: defaultdict[tuple[int, int], asyncio.Lock] = defaultdict(asyncio.Lock)
    res = WorkloadResult()
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
    for _ in range(w.operations):
        post = viral if rng.random() < w.viral_share else rng.choices(others, weights)[0]
        queue.put_nowait((post, w.first_user + rng.randrange(w.users)))
    for _ in range(w.concurrency):
        queue.put_nowait(None)

    async def send(c: aiohttp.ClientSession, post: int, user: int) -> None:
        async with in_flight[(post, user)]:  # one request at a time per edge
            await send_in_order(c, post, user)

    async def send_in_order(c: aiohttp.ClientSession, post: int, user: int) -> None:
        token = tokens.setdefault(user, issue_token(secret, user, ttl_s=7200))
        liked_now = res.final_state.get((post, user), False)
        unlike = liked_now and rng.random() < w.unlike_share * 3
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        attempts = 2 if rng.random() < w.retry_share else 1
        for attempt in range(attempts):
            t0 = time.perf_counter()
            r = await _send_retrying(c, "DELETE" if unlike else "POST", post, headers, res)
            res.latencies_ms.append((time.perf_counter() - t0) * 1000)
            res.ops += 1
            res.retries += attempt
            if r.status == 200:
                res.acked += 1
                res.replayed += r.replayed
                res.final_state[(post, user)] = bool(r.liked)
            else:
                res.errors[r.status] = res.errors.get(r.status, 0) + 1
                res.uncertain.add((post, user))

    async def worker(c: aiohttp.ClientSession) -> None:
        while (item := await queue.get()) is not None:
            await send(c, *item)

    t0 = time.perf_counter()
    async with client_session(api_url, w.concurrency) as session:
        await asyncio.gather(*[worker(session) for _ in range(w.concurrency)])
    res.seconds = time.perf_counter() - t0
    return res


def client_session(api_url: str, connections: int) -> aiohttp.ClientSession:
    """The workload's HTTP client: aiohttp, since the load generator shares the cores
    with the system it drives (measured against the API: 190 µs of CPU per request,
    where httpx took 1,206 with a client per connection and 3,900 with one pool)."""
    return aiohttp.ClientSession(
        api_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=60),
    )
