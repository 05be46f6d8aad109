"""The workload's record of acknowledged states is exact only if a client never has two
requests for one edge in flight (the API does not order those); this checks the client
side of that promise against a server that answers slowly and out of order, and that
a dropped connection is retried with the same Idempotency-Key."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from loadgen.workload import Workload, WorkloadResult, run_workload

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler, w: Workload) -> WorkloadResult:
    """Run the workload against ``handler`` served on a local port."""
    app = web.Application()
    app.router.add_route("*", "/v1/posts/{post}/like", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await run_workload(f"http://127.0.0.1:{port}", "s" * 40, w)
    finally:
        await runner.cleanup()


def test_requests_for_one_edge_are_sent_one_after_another() -> None:
    in_flight: Counter[tuple[str, str]] = Counter()
    overlaps: list[tuple[str, str]] = []
    methods: Counter[str] = Counter()
    rng = random.Random(7)

    async def handler(request: web.Request) -> web.StreamResponse:
        edge = (request.match_info["post"], request.headers["Authorization"])  # token: user
        methods[request.method] += 1
        in_flight[edge] += 1
        if in_flight[edge] > 1:
            overlaps.append(edge)
        await asyncio.sleep(rng.random() / 500)  # answers overtake each other
        in_flight[edge] -= 1
        return web.json_response({"liked": request.method == "POST"})

    # 2 posts x 3 users under 16 concurrent workers: the same edge is queued many times
    w = Workload(posts=[11, 12], operations=600, users=3, concurrency=16, retry_share=0.0)
    result = asyncio.run(_serve(handler, w))

    assert result.acked == 600
    assert not overlaps, f"{len(overlaps)} requests overlapped one for the same edge"
    assert set(result.final_state) == {(p, u) for p in (11, 12) for u in (1, 2, 3)}
    assert methods["DELETE"] > 50 and methods["POST"] > 50  # both transitions, interleaved


def test_a_dropped_connection_is_retried_with_the_same_key() -> None:
    keys: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:  # the first attempt: the server dies mid-request
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(0.1)
        return web.json_response({"liked": True})

    w = Workload(posts=[11, 12], operations=1, users=1, concurrency=1, retry_share=0.0)
    result = asyncio.run(_serve(handler, w))

    assert result.acked == 1 and result.transport_retries == 1 and not result.uncertain
    assert len(keys) == 2 and keys[0] == keys[1]
    assert list(result.final_state.values()) == [True]
