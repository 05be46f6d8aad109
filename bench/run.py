"""Run the benchmark suite: ``python -m bench.run [--only NAME ...] [--quick]``.

Each benchmark writes ``bench/results/<name>.json``; ``RESULTS.md`` is rebuilt from all
JSON files present. ``--quick`` (smaller sizes, a smoke run) writes to
``bench/results/quick/`` so it never overwrites the figures of a full run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections.abc import Callable

from bench.common import (
    LEFTOVERS,
    Result,
    background,
    log,
    render_markdown,
    sweep_leftovers,
    wait_healthy,
    write_result,
)

BENCHMARKS = [
    "api_vs_pgbench",
    "hot_post",
    "flow_throughput",
    "quix_comparison",
    "freshness",
    "two_processes",
    "dedupe_memory",
]


def _registry() -> dict[str, Callable[..., Result]]:
    from bench.api_bench import bench_api_vs_pgbench, bench_hot_post
    from bench.dedupe_mem import bench_dedupe_memory
    from bench.flow_bench import bench_flow_throughput, bench_quix_comparison, bench_two_processes
    from bench.freshness import bench_freshness

    return {
        "api_vs_pgbench": bench_api_vs_pgbench,
        "hot_post": bench_hot_post,
        "flow_throughput": bench_flow_throughput,
        "quix_comparison": bench_quix_comparison,
        "freshness": bench_freshness,
        "two_processes": bench_two_processes,
        "dedupe_memory": bench_dedupe_memory,
    }


def code_version() -> dict[str, object]:
    """The commit measured, and uncommitted changes outside bench/ (read-only git)."""
    import subprocess

    from core.settings import REPO_ROOT

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.rstrip()

    dirty = [
        ln[3:]
        for ln in git("status", "--porcelain").splitlines()
        if ln[3:] and not ln[3:].startswith("bench/")
    ]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_outside_bench": dirty}


def main(argv: list[str] | None = None) -> int:
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
    names = [n for n in BENCHMARKS if not a.only or n in a.only]
    from bench.api_bench import Ctx

    ctx = Ctx(a.quick)
    registry = _registry()
    t_all = time.monotonic()
    failed = 0
    swept = sweep_leftovers()
    if swept:
        log(f"removed leftovers of earlier crashed runs: {swept}")
    for name in names:
        log(f"=== {name}{' (quick)' if a.quick else ''}")
        t0 = time.monotonic()
        res = None
        first_error = ""
        for attempt in (1, 2):
            health = wait_healthy(need_flow=name == "freshness")
            bg = background(2.0)
            try:
                res = registry[name](ctx)
                if attempt > 1:
                    res.notes.append(f"first attempt failed ({first_error}); this is the retry")
                break
            except Exception as e:
                traceback.print_exc()
                first_error = f"{type(e).__name__}: {str(e)[:300]}"
                res = Result(name, a.quick, error=first_error)
                if attempt == 1:
                    log(f"{name} failed ({first_error}); retrying once when the stack is healthy")
        assert res is not None
        if res.error:
            failed += 1
        res.absolute["stack_health_before"] = health
        res.config["code"] = code_version()
        res.seconds = round(time.monotonic() - t0, 1)
        res.absolute["background_before"] = bg
        if bg["machine_busy"] > 0.25:
            res.notes.append(
                f"The machine was already {bg['machine_busy']:.0%} busy before this benchmark "
                f"(cores: {bg['cores']}): someone else's load shares the 2 cores."
            )
        path = write_result(res)
        for m in res.metrics:
            log(
                f"{name}: {m.label}: ours {m.ours_text} | limit {m.limit_text} | "
                f"ratio {m.ratio if m.ratio is None else round(m.ratio, 3)} | goal {m.goal} "
                f"| met {m.met}"
            )
        log(f"{name} done in {res.seconds:.0f}s -> {path}")
    if LEFTOVERS:
        log(f"NOT cleaned up (stores unreachable): {LEFTOVERS}")
    md = render_markdown(a.quick, BENCHMARKS)
    log(f"all done in {time.monotonic() - t_all:.0f}s -> {md}")
    print(md.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
