"""Benchmark 7 (``dedupe_memory``): bytes per active edge held by ``flows.dedupe.EdgeDeduper``.

N distinct edges (realistic 63-bit post and user ids, event times over an hour) go
through ``EdgeDeduper.apply`` as real ``LikeEvent`` objects; ``tracemalloc`` gives the
memory retained. The machine's limit, measured the same way beside it: the same edges
as a flat packed array (128-bit edge key + 64-bit packed state = 24 bytes of payload).
A second child process measures the RSS growth without tracemalloc, as a cross-check.
Also measured, because it scales with the same state: what one Bytewax snapshot of it
costs (``EdgeDeduper.snapshot`` copy plus pickling, done every ``snapshot_interval_s``).
"""

from __future__ import annotations

import gc
import json
import pickle
import random
import subprocess
import sys
import time
import tracemalloc
import uuid
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Metric, Result, env_for_child, fmt

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC).timestamp()
_EID = uuid.UUID(int=1)


def _edges(n: int, seed: int = 7) -> Any:
    """Distinct with overwhelming probability (2**126 pairs); checked by the caller."""
    rng = random.Random(seed)
    for _ in range(n):
        yield rng.randrange(1, 2**63), rng.randrange(1, 2**63), T0 + rng.random() * 3600


def _apply_all(n: int) -> Any:
    from flows.dedupe import EdgeDeduper
    from schemas.events import LikeEvent

    d = EdgeDeduper(ttl_ms=7 * 24 * 3600 * 1000)
    construct = LikeEvent.model_construct
    for post, user, ts in _edges(n):
        ev = construct(
            event_id=_EID,
            action="LikeCreated",
            post_id=post,
            user_id=user,
            edge_version=1,
            occurred_at=datetime.fromtimestamp(ts, tz=UTC),
            idempotency_key=None,
            author_id=None,
        )
        d.apply(ev)
    return d


def measure_tracemalloc(n: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    d = _apply_all(n)
    secs = time.perf_counter() - t0
    gc.collect()
    ours = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(d.edges) == n

    # the limit: the same information packed flat
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    packed = array("Q")
    for k, v in d.edges.items():
        packed.append(k >> 64)
        packed.append(k & (2**64 - 1))
        packed.append(v & (2**64 - 1))
    flat = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del packed

    t1 = time.perf_counter()
    snap = d.snapshot()
    copy_ms = (time.perf_counter() - t1) * 1000
    t2 = time.perf_counter()
    blob = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_ms = (time.perf_counter() - t2) * 1000
    return {
        "edges": n,
        "ours_bytes": ours,
        "ours_bytes_per_edge": ours / n,
        "flat_bytes_per_edge": flat / n,
        "apply_seconds_under_tracemalloc": round(secs, 2),
        "snapshot_copy_ms": round(copy_ms, 1),
        "snapshot_pickle_ms": round(pickle_ms, 1),
        "snapshot_pickled_bytes_per_edge": round(len(blob) / n, 1),
    }


def measure_rss(n: int) -> dict[str, Any]:
    """RSS growth in a fresh process (no tracemalloc), ids generated without a set."""
    code = (
        "import gc, json, resource, sys\n"
        "from bench.dedupe_mem import _apply_all\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "gc.collect(); r0 = rss()\n"
        f"d = _apply_all({n})\n"
        "gc.collect(); r1 = rss()\n"
        "print(json.dumps({'rss_delta_bytes_per_edge': (r1 - r0) / len(d.edges)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env_for_child(),
        timeout=900,
        cwd=Path(__file__).parents[1],
    )
    if out.returncode != 0:
        return {"rss_error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_dedupe_memory(ctx: Any) -> Result:
    n = 100_000 if ctx.quick else 1_000_000
    res = Result("dedupe_memory", ctx.quick)
    res.config = {
        "edges": n,
        "ids": "random post and user ids in [1, 2**63) (realistic 63-bit ids)",
        "event_times": "uniform over one hour",
        "measure": "tracemalloc retained bytes after EdgeDeduper.apply of every edge",
    }
    m = measure_tracemalloc(n)
    m.update(measure_rss(n))
    res.absolute = m
    ours, flat = m["ours_bytes_per_edge"], m["flat_bytes_per_edge"]
    res.metrics.append(
        Metric(
            label="dedupe_memory",
            ours=ours,
            limit=flat,
            unit="bytes/edge",
            ratio=ours / flat,
            goal="≤ 200 bytes/edge",
            met=ours <= 200,
            ours_text=f"{ours:.0f} B/edge (RSS cross-check "
            f"{fmt(m.get('rss_delta_bytes_per_edge'))} B/edge)",
            limit_text=f"flat packed array: {flat:.0f} B/edge",
        )
    )
    res.notes.append(
        f"One snapshot of this state (EdgeDeduper.snapshot copies the dict, Bytewax pickles "
        f"it) costs {m['snapshot_copy_ms']:.0f} ms copy + {m['snapshot_pickle_ms']:.0f} ms "
        f"pickle and {m['snapshot_pickled_bytes_per_edge']:.0f} B/edge for {n:,} edges; the "
        f"counts flow snapshots every snapshot_interval_s ({_interval()} s), so this recurs "
        "with the full state size, not with the changes."
    )
    return res


def _interval() -> int:
    from core.settings import FlowSettings

    return FlowSettings().snapshot_interval_s
