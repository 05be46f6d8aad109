"""Unit tests of the pure stage logic: dedupe, windows, hot detection."""

from __future__ import annotations

from flows.dedupe import EdgeDeduper
from flows.hot import HotDetector
from flows.windows import PartitionWindows
from tests.flows.helpers import like_event


def test_dedupe_drops_duplicates_and_stale_versions() -> None:
    d = EdgeDeduper(ttl_ms=10_000)
    assert d.apply(like_event(1, 2, 1, 1000)) == (1, 1)
    assert d.apply(like_event(1, 2, 1, 1000)) is None
    assert d.apply(like_event(1, 2, 2, 1100)) == (-1, 1)
    assert d.apply(like_event(1, 2, 1, 1000)) is None  # stale
    assert d.apply(like_event(1, 2, 5, 1200)) == (1, 3)  # gap: state-based delta, version distance


def test_dedupe_ttl_evicts_on_event_time_and_snapshot_restores() -> None:
    d = EdgeDeduper(ttl_ms=8_000)
    d.apply(like_event(1, 1, 1, 0))
    d.apply(like_event(2, 2, 1, 20_000))
    assert d.maybe_evict() == 1
    assert d.apply(like_event(1, 1, 1, 20_001)) == (1, 1), "an evicted edge is unknown again"
    restored = EdgeDeduper(8_000, d.snapshot())
    assert restored.apply(like_event(2, 2, 1, 20_002)) is None
    snap = d.snapshot()
    d.apply(like_event(3, 3, 1, 20_003))
    assert len(snap[0]) == 2, "snapshots do not alias live state"


def test_windows_close_on_event_time_and_correct_late_events() -> None:
    w = PartitionWindows(3, window_ms=1000, lateness_ms=500)
    w.part = "p3"
    assert w.add(1, 1, 100, "a") is None
    assert w.add(1, -1, 900, "b") is None
    assert w.add(2, 1, 1200, "c") is None
    assert w.close_due() == []  # watermark 700
    w.add(2, 1, 1600, "d")  # watermark 1100: window [0, 1000) closes
    closed = w.close_due()
    assert [(r.post_id, r.likes, r.unlikes, r.part) for r in closed] == [(1, 1, 1, "p3")]
    late = w.add(1, 1, 50, "e")
    assert late is not None and late.part == "late:e" and late.likes == 1
    assert w.late_events == 1
    assert w.add(1, 0, 1700, "f") is None  # no count change, no row


def test_windows_restore_re_emits_open_rows() -> None:
    w = PartitionWindows(0, 1000, 0)
    w.add(5, 1, 10, "a")
    assert len(w.flush_dirty()) == 1 and w.flush_dirty() == []
    restored = PartitionWindows(0, 1000, 0, w.snapshot())
    assert [(r.post_id, r.likes) for r in restored.flush_dirty()] == [(5, 1)]


def test_a_reset_flow_writes_parts_of_its_own_beside_the_lost_states() -> None:
    """After ``likes flows-reset`` the window open at the reset already holds a row of
    the lost state (version 3 here); the new state's rows must not replace it (their
    version starts low again) nor be ignored: they go to a part named for the start."""
    before = PartitionWindows(4, 1000, 0)
    for i in range(3):
        before.add(5, 1, 10 + i, f"old{i}")
    reset = PartitionWindows(4, 1000, 0, starts={4: 812, 7: 90})
    reset.add(5, 1, 20, "new")
    [old_row], [new_row] = before.flush_dirty(), reset.flush_dirty()
    assert (old_row.part, old_row.version) == ("p4", 3)
    assert (new_row.part, new_row.version) == ("p4@812", 1)
    restored = PartitionWindows(4, 1000, 0, reset.snapshot(), starts={4: 812})
    assert [r.part for r in restored.flush_dirty()] == ["p4@812"]
    assert PartitionWindows(3, 1000, 0, starts={4: 812}).part == "p3"


def test_hot_hysteresis() -> None:
    h = HotDetector(window_ms=10_000, bucket_ms=1000, threshold=10, cool_threshold=5)
    h.add(1, 0, 9)
    assert h.evaluate([1], 500) == []
    h.add(1, 1000, 2)
    assert [c.state for c in h.evaluate([1], 1500)] == ["hot"]
    assert h.evaluate([1], 10_500) == [], "an unchanged rate is no news"
    h.add(1, 10_000, 1)
    assert [(c.state, c.rate) for c in h.evaluate([1], 10_600)] == [("update", 12)]
    cooled = h.evaluate([1], 11_500)
    assert [c.state for c in cooled] == ["cooled"] and cooled[0].peak_rate == 12
    h.sweep(50_000)
    assert h.buckets == {}
