"""The workload's record of acknowledged states is exact only if a client never has two
requests for one edge in flight (the API does not order those); this checks the client
side of that promise against a server that answers slowly and out of order."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx

from loadgen.workload import Workload, run_workload


def test_requests_for_one_edge_are_sent_one_after_another() -> None:
    in_flight: Counter[tuple[str, str]] = Counter()
    overlaps: list[tuple[str, str]] = []
    methods: Counter[str] = Counter()
    rng = random.Random(7)

    async def handler(request: httpx.Request) -> httpx.Response:
        post = request.url.path.split("/")[3]
        user = request.headers["Authorization"]  # one token per user
        edge = (post, user)
        methods[request.method] += 1
        in_flight[edge] += 1
        if in_flight[edge] > 1:
            overlaps.append(edge)
        await asyncio.sleep(rng.random() / 500)  # answers overtake each other
        in_flight[edge] -= 1
        return httpx.Response(200, json={"liked": request.method == "POST"})

    # 2 posts x 3 users under 16 concurrent workers: the same edge is queued many times
    w = Workload(posts=[11, 12], operations=600, users=3, concurrency=16, retry_share=0.0)
    result = asyncio.run(
        run_workload("http://api.test", "s" * 40, w, transport=httpx.MockTransport(handler))
    )

    assert result.acked == 600
    assert not overlaps, f"{len(overlaps)} requests overlapped one for the same edge"
    assert set(result.final_state) == {(p, u) for p in (11, 12) for u in (1, 2, 3)}
    assert methods["DELETE"] > 50 and methods["POST"] > 50  # both transitions, interleaved
