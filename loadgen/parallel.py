"""The workload from several client processes at once, so the load generator is not the
bottleneck (one asyncio process tops out near the API's own speed on 2 cores).

Each process drives its own slice of the operations with its own users (disjoint user
ranges), so every edge has one client and the merged record of acknowledged states is
exact, as a single client's would be.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from loadgen.workload import Workload, WorkloadResult, run_workload


def _run(api_url: str, secret: str, w: Workload) -> WorkloadResult:
    return asyncio.run(run_workload(api_url, secret, w))


def merge(parts: list[WorkloadResult]) -> WorkloadResult:
    """One result for several clients that ran side by side."""
    out = WorkloadResult()
    for r in parts:
        out.ops += r.ops
        out.acked += r.acked
        out.retries += r.retries
        out.transport_retries += r.transport_retries
        out.replayed += r.replayed
        for code, n in r.errors.items():
            out.errors[code] = out.errors.get(code, 0) + n
        out.latencies_ms.extend(r.latencies_ms)
        out.seconds = max(out.seconds, r.seconds)
        out.final_state.update(r.final_state)
        out.uncertain |= r.uncertain
    return out


def run_parallel(api_url: str, secret: str, w: Workload, processes: int = 3) -> WorkloadResult:
    """``w`` split over ``processes`` client processes (concurrency split too)."""
    if processes <= 1:
        return _run(api_url, secret, w)
    slices = [
        dataclasses.replace(
            w,
            operations=w.operations // processes + (i < w.operations % processes),
            concurrency=max(1, w.concurrency // processes),
            users=max(1, w.users // processes),
            first_user=w.first_user + i * max(1, w.users // processes),
            seed=w.seed + i,
        )
        for i in range(processes)
    ]
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(_run, [api_url] * processes, [secret] * processes, slices))
    return merge(parts)
