"""Run the benchmark suite: ``python -m bench.run [--only NAME ...] [--quick]``.

Each benchmark writes ``bench/results/<name>.json`` (``<name>.cluster.json`` when the
stack runs the cluster profile, ``LIKES_PROFILE=cluster``); ``RESULTS.md`` is rebuilt
from all JSON files present. ``--quick`` (smaller sizes, a smoke run) writes to
``bench/results/quick/`` so it never overwrites the figures of a full run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import asdict

from bench.cleanup import LEFTOVERS, sweep_leftovers
from bench.context import Benchmark, Ctx
from bench.cpu import background
from bench.log import log
from bench.results import Result, render_markdown, result_name, write_result
from bench.stack_wait import topology_mismatch, wait_healthy
from core.settings import REPO_ROOT, CommonSettings
from devstack.components import FLOW_NAMES

BENCHMARKS = [
    "api_vs_pgbench",
    "hot_post",
    "flow_throughput",
    "quix_comparison",
    "two_processes",
    "dedupe_memory",
    "liked_by",
    "read_batch",
    "system_throughput",
    "freshness",  # at half the rate system_throughput found
    "backfill",
]
# the live flows each benchmark needs healthy besides the stores, Kafka and the API
NEEDS_FLOWS: dict[str, tuple[str, ...]] = {
    "freshness": ("counts",),
    "system_throughput": FLOW_NAMES,
}


def _registry() -> dict[str, Benchmark]:
    from bench.api_bench import bench_api_vs_pgbench, bench_hot_post
    from bench.backfill_bench import bench_backfill
    from bench.dedupe_mem import bench_dedupe_memory
    from bench.flow_bench import bench_flow_throughput, bench_quix_comparison, bench_two_processes
    from bench.freshness import bench_freshness
    from bench.liked_by import bench_liked_by
    from bench.read_batch import bench_read_batch
    from bench.system_throughput import bench_system_throughput

    return {
        "api_vs_pgbench": bench_api_vs_pgbench,
        "hot_post": bench_hot_post,
        "flow_throughput": bench_flow_throughput,
        "quix_comparison": bench_quix_comparison,
        "freshness": bench_freshness,
        "two_processes": bench_two_processes,
        "dedupe_memory": bench_dedupe_memory,
        "liked_by": bench_liked_by,
        "read_batch": bench_read_batch,
        "system_throughput": bench_system_throughput,
        "backfill": bench_backfill,
    }


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.rstrip()


def code_version() -> dict[str, object]:
    """The commit measured, and uncommitted changes outside bench/ (read-only git)."""
    dirty = [
        ln[3:]
        for ln in _git("status", "--porcelain").splitlines()
        if ln[3:] and not ln[3:].startswith("bench/")
    ]
    return {"commit": _git("rev-parse", "--short", "HEAD"), "uncommitted_outside_bench": dirty}


def _attempt(name: str, bench: Benchmark, ctx: Ctx) -> Result:
    """Run ``bench``, once more if it fails (the shared stack may have been restarted)."""
    first_error = ""
    for attempt in (1, 2):
        health = wait_healthy(flows=NEEDS_FLOWS.get(name, ()))
        bg = background(2.0)
        try:
            res = bench(ctx)
            if attempt > 1:
                res.notes.append(f"first attempt failed ({first_error}); this is the retry")
        except Exception as e:
            traceback.print_exc()
            first_error = f"{type(e).__name__}: {str(e)[:300]}"
            res = Result(name, ctx.quick, error=first_error)
            if attempt == 1:
                log(f"{name} failed ({first_error}); retrying once when the stack is healthy")
                continue
        break
    res.absolute["stack_health_before"] = asdict(health)
    res.absolute["background_before"] = asdict(bg)
    if bg.machine_busy > 0.25:
        res.notes.append(
            f"The machine was already {bg.machine_busy:.0%} busy before this benchmark "
            f"(cores: {bg.cores}): someone else's load shares the 2 cores."
        )
    return res


def run_one(name: str, bench: Benchmark, ctx: Ctx) -> Result:
    """Run one benchmark and write its result file (named after the stack's profile:
    ``<name>.cluster.json`` in the cluster profile)."""
    profile = CommonSettings().profile
    log(f"=== {name}{' (quick)' if ctx.quick else ''}, {profile} profile")
    t0 = time.monotonic()
    res = _attempt(name, bench, ctx)
    res.name = result_name(name, profile)
    res.config["profile"] = profile
    res.config["code"] = code_version()
    res.seconds = round(time.monotonic() - t0, 1)
    path = write_result(res)
    for m in res.metrics:
        shown = m.ratio if m.ratio is None else round(m.ratio, 3)
        log(
            f"{name}: {m.label}: ours {m.ours_text} | limit {m.limit_text} | "
            f"ratio {shown} | goal {m.goal} | met {m.met}"
        )
    log(f"{name} done in {res.seconds:.0f}s -> {path}")
    return res


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; 1 if any failed."""
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    p.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    a = p.parse_args(argv)
    mismatch = topology_mismatch()
    if mismatch is not None:
        log(f"refusing to measure: {mismatch}")
        return 2
    ctx, registry, t_all = Ctx(a.quick), _registry(), time.monotonic()
    swept = sweep_leftovers()
    if swept:
        log(f"removed leftovers of earlier crashed runs: {swept}")
    names = [n for n in BENCHMARKS if not a.only or n in a.only]
    failed = sum(1 for n in names if run_one(n, registry[n], ctx).error)
    if LEFTOVERS:
        log(f"NOT cleaned up (stores unreachable): {LEFTOVERS}")
    md = render_markdown(a.quick, BENCHMARKS)
    log(f"all done in {time.monotonic() - t_all:.0f}s -> {md}")
    print(md.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
