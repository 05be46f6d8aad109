"""Benchmark 7 (``dedupe_memory``): bytes per active edge held by ``flows.dedupe.EdgeDeduper``.

N distinct edges (realistic 63-bit post and user ids, event times over an hour) go
through ``EdgeDeduper.apply`` as real ``LikeEvent`` objects, with the flows' own TTL
(``FlowSettings.dedupe_ttl_s``); ``tracemalloc`` gives the memory retained. The
machine's limit, measured the same way beside it: the same edges as a flat packed array
(128-bit edge key + 64-bit packed state = 24 bytes of payload). A second child process
measures the RSS growth without tracemalloc, as a cross-check. Also measured, because it
scales with the same state: what one Bytewax snapshot of it costs
(``EdgeDeduper.snapshot`` copy plus pickling, done every ``snapshot_interval_s``), and
what the same state costs kept in an edge store (:mod:`flows.edge_store`, the production
flows' mode): the one-time move into it, an epoch's snapshot after a given number of
edges changed, and the resume that loads the map back.

``python -m bench.dedupe_mem N`` is that child: it prints ``BENCH {"event": "rss", ...}``.
"""

from __future__ import annotations

import gc
import pickle
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench.children import Child, emit
from bench.context import Ctx
from bench.results import Metric, Result
from bench.stats import fmt
from core.settings import FlowSettings
from flows.dedupe import EdgeDeduper
from schemas.events import LikeEvent

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC).timestamp()
_EID = uuid.UUID(int=1)


def _edges(n: int, seed: int = 7) -> Iterator[tuple[int, int, float]]:
    """Distinct with overwhelming probability (2**126 pairs); checked by the caller."""
    rng = random.Random(seed)
    for _ in range(n):
        yield rng.randrange(1, 2**63), rng.randrange(1, 2**63), T0 + rng.random() * 3600


def apply_all(n: int) -> EdgeDeduper:
    """A deduper that saw one like of each of ``n`` edges."""
    d = EdgeDeduper(ttl_ms=FlowSettings().dedupe_ttl_s * 1000)
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


@dataclass(frozen=True)
class DedupeMemory:
    """What the state of ``edges`` edges costs, held and snapshotted."""

    edges: int
    ours_bytes: int
    ours_bytes_per_edge: float
    flat_bytes_per_edge: float
    apply_seconds_under_tracemalloc: float
    snapshot_copy_ms: float
    snapshot_pickle_ms: float
    snapshot_pickled_bytes_per_edge: float
    rss_delta_bytes_per_edge: float | None = None
    rss_error: str | None = None


@dataclass(frozen=True)
class StoredSnapshots:
    """The same state kept in an edge store (one partition's file)."""

    edges: int
    changed_per_epoch: int
    move_in_ms: float
    epoch_snapshot_ms: float
    epoch_snapshot_pickled_bytes: int
    resume_ms: float
    file_bytes: int


def _flat_bytes(d: EdgeDeduper) -> int:
    """The limit: the same information packed flat."""
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
    return flat


def measure_tracemalloc(n: int) -> DedupeMemory:
    """Retained bytes of the deduper and of the flat array, and the snapshot cost."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    d = apply_all(n)
    secs = time.perf_counter() - t0
    gc.collect()
    ours = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(d.edges) == n
    flat = _flat_bytes(d)
    t1 = time.perf_counter()
    snap = d.snapshot()
    t2 = time.perf_counter()
    blob = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
    t3 = time.perf_counter()
    return DedupeMemory(
        edges=n,
        ours_bytes=ours,
        ours_bytes_per_edge=ours / n,
        flat_bytes_per_edge=flat / n,
        apply_seconds_under_tracemalloc=round(secs, 2),
        snapshot_copy_ms=round((t2 - t1) * 1000, 1),
        snapshot_pickle_ms=round((t3 - t2) * 1000, 1),
        snapshot_pickled_bytes_per_edge=round(len(blob) / n, 1),
    )


def measure_edge_store(d: EdgeDeduper, changed: int, store_dir: Path) -> StoredSnapshots:
    """Move ``d``'s map into an edge store, change ``changed`` of its edges (a new version
    each), take the epoch's snapshot, and resume from it."""
    stored = EdgeDeduper(d.ttl_ms, (d.edges, d.max_ms), store_dir)
    stored.attach(0)
    t0 = time.perf_counter()
    stored.snapshot()
    t1 = time.perf_counter()
    construct = LikeEvent.model_construct
    for key in random.Random(3).sample(sorted(stored.edges), changed):
        ev = construct(
            event_id=_EID,
            action="LikeRemoved",
            post_id=key >> 64,
            user_id=key & (2**64 - 1),
            edge_version=2,
            occurred_at=datetime.fromtimestamp(T0 + 3600, tz=UTC),
            idempotency_key=None,
            author_id=None,
        )
        assert stored.apply(ev) is not None
    t2 = time.perf_counter()
    snap = stored.snapshot()
    t3 = time.perf_counter()
    blob = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
    resumed = EdgeDeduper(d.ttl_ms, pickle.loads(blob), store_dir)
    t4 = time.perf_counter()
    resumed.attach(0)
    t5 = time.perf_counter()
    assert resumed.edges == stored.edges, "the resume gives the snapshot's map"
    return StoredSnapshots(
        edges=len(d.edges),
        changed_per_epoch=changed,
        move_in_ms=round((t1 - t0) * 1000, 1),
        epoch_snapshot_ms=round((t3 - t2) * 1000, 1),
        epoch_snapshot_pickled_bytes=len(blob),
        resume_ms=round((t5 - t4) * 1000, 1),
        file_bytes=sum(f.stat().st_size for f in store_dir.iterdir()),
    )


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def main() -> None:
    """The child: RSS growth per edge in a fresh process, no tracemalloc."""
    n = int(sys.argv[1])
    gc.collect()
    r0 = _rss()
    d = apply_all(n)
    gc.collect()
    emit("rss", rss_delta_bytes_per_edge=(_rss() - r0) / len(d.edges))


def measure_rss(n: int, tmp: Path) -> tuple[float | None, str | None]:
    """RSS growth per edge from the child, or the child's error."""
    kid = Child(["bench.dedupe_mem", str(n)], tmp / "dedupe-rss.log")
    try:
        e = kid.wait_event("rss", 900)
        if e is None:
            return None, kid.log_tail(500)
        return float(e["rss_delta_bytes_per_edge"]), None
    finally:
        kid.stop()


def bench_dedupe_memory(ctx: Ctx) -> Result:
    """Bytes per edge of the dedupe state, against a flat packed array."""
    n = 100_000 if ctx.quick else 1_000_000
    res = Result("dedupe_memory", ctx.quick)
    res.config = {
        "edges": n,
        "ids": "random post and user ids in [1, 2**63) (realistic 63-bit ids)",
        "event_times": "uniform over one hour",
        "measure": "tracemalloc retained bytes after EdgeDeduper.apply of every edge",
    }
    m = measure_tracemalloc(n)
    # One epoch at 300 likes/s for 60 s over 12 partitions changes about 1,500 edges of
    # a partition; 10 times that is one at 3,000 likes/s.
    changed = [n // 660, n // 66]
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as tmp:
        rss, err = measure_rss(n, Path(tmp))
        d = apply_all(n)
        stores = [measure_edge_store(d, c, Path(tmp) / f"store-{c}") for c in changed]
    m = replace(m, rss_delta_bytes_per_edge=rss, rss_error=err)
    res.absolute = asdict(m) | {"edge_store": [asdict(x) for x in stores]}
    ours, flat = m.ours_bytes_per_edge, m.flat_bytes_per_edge
    res.metrics.append(
        Metric(
            label="dedupe_memory",
            ours=ours,
            limit=flat,
            unit="bytes/edge",
            ratio=ours / flat,
            goal="≤ 200 bytes/edge",
            met=ours <= 200,
            ours_text=f"{ours:.0f} B/edge (RSS cross-check {fmt(rss)} B/edge)",
            limit_text=f"flat packed array: {flat:.0f} B/edge",
        )
    )
    res.notes.append(
        f"One snapshot of this state (EdgeDeduper.snapshot copies the dict, Bytewax pickles "
        f"it) costs {m.snapshot_copy_ms:.0f} ms copy + {m.snapshot_pickle_ms:.0f} ms "
        f"pickle and {m.snapshot_pickled_bytes_per_edge:.0f} B/edge for {n:,} edges; the "
        f"counts flow snapshots every snapshot_interval_s "
        f"({FlowSettings().snapshot_interval_s} s), so this recurs with the full state size, "
        "not with the changes."
    )
    for x in stores:
        res.notes.append(
            f"Kept in an edge store (the production flows' mode): moving the {x.edges:,} "
            f"edges in once took {x.move_in_ms:,.0f} ms; after {x.changed_per_epoch:,} edges "
            f"changed, the epoch's snapshot took {x.epoch_snapshot_ms:.1f} ms (Bytewax "
            f"pickles {x.epoch_snapshot_pickled_bytes} bytes of it); a resume loads the map "
            f"in {x.resume_ms:,.0f} ms; the file holds {x.file_bytes / x.edges:.0f} B/edge."
        )
    return res


if __name__ == "__main__":
    main()
