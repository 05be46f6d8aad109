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
import contextlib
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from ingest_api.auth import issue_token

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


async def _send_retrying(
    c: httpx.AsyncClient, method: str, post: int, headers: dict[str, str], res: WorkloadResult
) -> httpx.Response:
    """One request; a dropped connection is retried with the same Idempotency-Key for up
    to ``RETRY_BUDGET_S``, as a mobile client would (a 409 meanwhile means the first
    attempt is still in flight, or was cut off with the server that died)."""
    lost = False
    delay = 0.05
    deadline = time.monotonic() + RETRY_BUDGET_S
    while time.monotonic() < deadline:
        try:
            r = await c.request(method, f"/v1/posts/{post}/like", headers=headers)
        except httpx.TransportError:
            lost = True
            res.transport_retries += 1
        else:
            if not (lost and r.status_code == 409):
                return r
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise RuntimeError(f"{method} like of post {post} kept failing for {RETRY_BUDGET_S:.0f}s")


async def run_workload(
    api_url: str, secret: str, w: Workload, transport: httpx.AsyncBaseTransport | None = None
) -> WorkloadResult:
    """Send ``w.operations`` like/unlike requests; return what was acknowledged."""
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

    async def send(c: httpx.AsyncClient, post: int, user: int) -> None:
        async with in_flight[(post, user)]:  # one request at a time per edge
            await send_in_order(c, post, user)

    async def send_in_order(c: httpx.AsyncClient, post: int, user: int) -> None:
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
            if r.status_code == 200:
                res.acked += 1
                res.replayed += r.headers.get("Idempotent-Replayed") == "true"
                res.final_state[(post, user)] = bool(r.json()["liked"])
            else:
                res.errors[r.status_code] = res.errors.get(r.status_code, 0) + 1
                res.uncertain.add((post, user))

    async def worker(c: httpx.AsyncClient) -> None:
        while (item := await queue.get()) is not None:
            await send(c, *item)

    t0 = time.perf_counter()
    # a client (one connection) per worker: httpcore's pool scans all its connections for
    # every request, so one pool of ``concurrency`` connections cost 3.9 ms of CPU per
    # request at 32 (the demo's client was the bottleneck); one each costs a tenth of it
    async with contextlib.AsyncExitStack() as clients:
        workers = [
            worker(
                await clients.enter_async_context(
                    httpx.AsyncClient(
                        base_url=api_url,
                        timeout=60,
                        limits=httpx.Limits(max_connections=1),
                        transport=transport,
                    )
                )
            )
            for _ in range(w.concurrency)
        ]
        await asyncio.gather(*workers)
    res.seconds = time.perf_counter() - t0
    return res
