"""The dedupe map kept in an edge store (flows.edge_store): a snapshot is a generation
number, a resume gives exactly the map that snapshot was taken from."""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path

import pytest

from flows import edge_store
from flows.dedupe import EdgeDeduper
from flows.edge_store import KEEP_GENERATIONS, EdgeStore, MissingGeneration, StoredEdges
from tests.flows.helpers import like_event

TTL = 7 * 24 * 3600 * 1000
PARTITION = 3


def stored(store_dir: Path, snapshot: object = None, ttl_ms: int = TTL) -> EdgeDeduper:
    d = EdgeDeduper(ttl_ms, snapshot, store_dir)  # type: ignore[arg-type]
    d.attach(PARTITION)
    return d


def test_a_snapshot_names_a_generation_and_a_resume_gives_its_map(tmp_path: Path) -> None:
    d = stored(tmp_path)
    for user in range(1, 5001):
        assert d.apply(like_event(1 + user % 50, user, 1, 1_000 + user)) == (1, 1)
    snap = d.snapshot()
    assert snap == StoredEdges(1, 6_000)
    assert len(pickle.dumps(snap)) < 200, "5,000 edges, and the snapshot stays a few bytes"
    assert d.apply(like_event(7, 57, 2, 7_000)) == (-1, 1)
    assert d.snapshot() == StoredEdges(2, 7_000)

    resumed = stored(tmp_path, StoredEdges(2, 7_000))
    assert resumed.edges == d.edges
    assert resumed.apply(like_event(7, 57, 2, 7_000)) is None, "the duplicate is still dropped"
    assert resumed.apply(like_event(4, 3, 1, 1_003)) is None
    assert resumed.apply(like_event(7, 57, 3, 7_001)) == (1, 1)


def test_a_resume_at_an_earlier_generation_forgets_what_came_after(tmp_path: Path) -> None:
    """Bytewax can resume one epoch behind the last snapshot we wrote (a crash between
    our commit and its own): the map is that epoch's, and the replayed events apply."""
    d = stored(tmp_path)
    d.apply(like_event(1, 1, 1, 1_000))
    first = d.snapshot()
    at_first = dict(d.edges)
    d.apply(like_event(1, 1, 2, 2_000))
    d.apply(like_event(1, 2, 1, 2_000))
    d.snapshot()

    resumed = stored(tmp_path, first)
    assert resumed.edges == at_first
    assert resumed.apply(like_event(1, 1, 2, 2_000)) == (-1, 1), "replayed, applied again"
    assert resumed.apply(like_event(1, 2, 1, 2_000)) == (1, 1)
    again = resumed.snapshot()
    assert again == StoredEdges(first.gen + 1, 2_000), "the dropped generation is reused"
    assert stored(tmp_path, again).edges == resumed.edges


def test_a_store_without_the_snapshots_generation_refuses_to_resume(tmp_path: Path) -> None:
    d = stored(tmp_path)
    d.apply(like_event(1, 1, 1, 1_000))
    snap = d.snapshot()
    for path in tmp_path.glob("partition-*"):
        path.unlink()
    with pytest.raises(MissingGeneration, match="flows-reset"):
        stored(tmp_path, snap)
    with pytest.raises(ValueError, match="edge store"):
        EdgeDeduper(TTL, snap, None)


def test_a_fresh_stage_empties_the_file_and_an_older_snapshot_moves_into_it(
    tmp_path: Path,
) -> None:
    old = stored(tmp_path)
    old.apply(like_event(1, 1, 1, 1_000))
    old.snapshot()
    fresh = stored(tmp_path)
    assert fresh.edges == {}
    assert EdgeStore(tmp_path, PARTITION).rows() == 0, "no state: no rows"

    in_snapshot = EdgeDeduper(TTL)  # a snapshot saved before the edge store
    in_snapshot.apply(like_event(2, 2, 1, 1_000))
    in_snapshot.apply(like_event(2, 3, 2, 1_500))
    legacy = in_snapshot.snapshot()
    moved = stored(tmp_path, legacy)
    assert moved.snapshot() == StoredEdges(1, 1_500)
    assert stored(tmp_path, StoredEdges(1, 1_500)).edges == in_snapshot.edges


def test_an_untouched_stage_returns_the_snapshot_it_resumed(tmp_path: Path) -> None:
    d = stored(tmp_path)
    d.apply(like_event(1, 1, 1, 1_000))
    snap = d.snapshot()
    idle = EdgeDeduper(TTL, snap, tmp_path)  # resumed, no batch (so never attached) yet
    assert idle.snapshot() == snap
    legacy = (dict(d.edges), 1_000)
    assert EdgeDeduper(TTL, legacy, tmp_path).snapshot() is legacy, "its edges are not lost"


def test_segments_stay_near_the_live_edges_and_every_resumable_generation_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_store, "MIN_SEGMENT_ROWS", 0)
    rng = random.Random(7)
    d = stored(tmp_path / "live", ttl_ms=80_000)
    versions: dict[tuple[int, int], int] = {}
    maps: dict[int, dict[int, int]] = {}
    ms = 0
    for _epoch in range(4 * KEEP_GENERATIONS):
        for _ in range(100):
            edge = (1 + rng.randrange(5), 1 + rng.randrange(40))
            versions[edge] = versions.get(edge, 0) + 1
            ms += 1
            d.apply(like_event(*edge, versions[edge], ms))
        maps[d.snapshot().gen] = dict(d.edges)
    store = EdgeStore(tmp_path / "live", PARTITION)
    assert len(d.edges) == 200
    assert store.segments() <= KEEP_GENERATIONS + 1
    assert store.rows() <= (2 * 200 + 100) * store.segments()
    for gen in range(d.gen - KEEP_GENERATIONS + 1, d.gen + 1):
        copy = tmp_path / f"at-{gen}"
        shutil.copytree(tmp_path / "live", copy)
        assert stored(copy, StoredEdges(gen, 0)).edges == maps[gen], gen

    d.apply(like_event(9, 9, 1, ms + 100_000))  # event time moves past the TTL of all the rest
    assert d.maybe_evict() == 200
    final = d.snapshot()
    assert (
        stored(tmp_path / "live", final).edges == d.edges == {(9 << 64) | 9: d.edges[(9 << 64) | 9]}
    )


def test_a_resumed_map_counts_as_loaded_only_once_attached(tmp_path: Path) -> None:
    d = stored(tmp_path)
    d.apply(like_event(1, 1, 1, 1_000))
    snap = d.snapshot()
    resumed = EdgeDeduper(TTL, snap, tmp_path)
    assert not resumed.loaded, "its edges are still in the store: the gauge must wait"
    resumed.attach(PARTITION)
    assert resumed.loaded and len(resumed.edges) == 1
    assert EdgeDeduper(TTL).loaded and EdgeDeduper(TTL, None, tmp_path).loaded
