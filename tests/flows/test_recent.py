"""The recent-likers state of one post shard, against a brute-force reference.

The property: after every transition, whenever the shard says its list is exact, the
list is the post's ``size`` newest current likers of the reference (every edge's latest
state); when it says it is not, that is because it no longer holds enough likers.
"""

from __future__ import annotations

import random

import pytest

from core.records import LikerChange, RecentLikers
from flows.recent import RecentLikersShard, RecentStage

T0_US = 1_795_000_000_000_000


def reference(edges: dict[tuple[int, int], tuple[int, bool, int]], post: int, n: int) -> list[int]:
    """The post's ``n`` newest current likers: by (time, version, user) descending."""
    keys = [
        (us, version, user)
        for (p, user), (version, liked, us) in edges.items()
        if p == post and liked
    ]
    return [user for _, _, user in sorted(keys, reverse=True)[:n]]


def change(post: int, user: int, version: int, us: int, inc: int = 1) -> LikerChange:
    return LikerChange(post, user, version, version % 2 == 1, us, inc)


def random_changes(rng: random.Random, n: int, users: int, posts: int = 2) -> list[LikerChange]:
    """Per edge alternating like/unlike with growing versions and times; edges
    interleaved at random, and times jittered so arrival order is not time order."""
    versions: dict[tuple[int, int], tuple[int, int]] = {}
    out = []
    for i in range(n):
        edge = (rng.randint(1, posts), rng.randint(1, users))
        version, last_us = versions.get(edge, (0, 0))
        us = max(T0_US + i * 1000 + rng.randint(-5000, 5000), last_us + 1)  # jitter: 5 ms
        versions[edge] = (version + 1, us)
        out.append(change(*edge, version + 1, us))
    return out


@pytest.mark.parametrize("margin", [0, 3, 20])
@pytest.mark.parametrize("seed", range(6))
def test_exact_lists_equal_the_reference_after_every_transition(margin: int, seed: int) -> None:
    rng = random.Random(seed)
    shard = RecentLikersShard(size=5, margin=margin, idle_ms=10**12)
    edges: dict[tuple[int, int], tuple[int, bool, int]] = {}
    inexact = 0
    for c in random_changes(rng, 3000, users=rng.choice([8, 30, 120])):
        shard.apply(c)
        edges[(c.post_id, c.user_id)] = (c.version, c.liked, c.occurred_us)
        rec = shard.record(c.post_id)
        if rec.exact:
            assert list(rec.user_ids) == reference(edges, c.post_id, 5)
        else:
            inexact += 1
            held = shard.active[c.post_id].held
            assert len(held) < 5 and shard.active[c.post_id].horizon is not None
    if margin == 20:
        assert inexact < 300, "a margin of 20 rarely runs out"


def test_an_unlike_lets_the_next_liker_back_in() -> None:
    shard = RecentLikersShard(size=3, margin=1, idle_ms=10**12)
    for user in range(1, 6):  # five likers; the oldest (user 1) is dropped at once
        shard.apply(change(7, user, 1, T0_US + user))
    assert shard.record(7).user_ids == (5, 4, 3)
    shard.apply(change(7, 5, 2, T0_US + 10))  # 5 unlikes: 2 comes back from the margin
    assert shard.record(7) == RecentLikers(7, (4, 3, 2), 6, True)
    shard.apply(change(7, 4, 2, T0_US + 11))  # the margin is spent: 1 is not held
    rec = shard.record(7)
    assert not rec.exact and rec.user_ids == (3, 2)
    shard.apply(change(7, 9, 1, T0_US + 12))
    assert shard.record(7).exact and shard.record(7).user_ids == (9, 3, 2)


def test_a_like_older_than_the_horizon_is_not_held() -> None:
    shard = RecentLikersShard(size=1, margin=0, idle_ms=10**12)
    shard.apply(change(1, 1, 1, T0_US + 10))
    shard.apply(change(1, 2, 1, T0_US + 20))  # drops 1: horizon at 1's like
    shard.apply(change(1, 2, 2, T0_US + 30))  # 2 unlikes: empty, not exact
    shard.apply(change(1, 3, 1, T0_US + 5))  # a late like older than 1's: unknown region
    assert shard.record(1) == RecentLikers(1, (), 4, False)


def test_idle_posts_keep_only_seq_and_horizon() -> None:
    shard = RecentLikersShard(size=2, margin=1, idle_ms=8_000)
    shard.apply(change(1, 1, 1, T0_US, inc=1))
    shard.apply(change(2, 1, 1, T0_US + 9_000_000, inc=1))
    assert shard.maybe_sweep() == 1 and 1 not in shard.active
    shard.apply(change(1, 2, 1, T0_US + 9_000_001, inc=1))
    rec = shard.record(1)
    assert rec.seq == 2, "seq survives compaction, so the sink's fence keeps working"
    assert not rec.exact and rec.user_ids == (2,), "user 1 is no longer known"
    shard.apply(change(1, 3, 1, T0_US + 9_000_002, inc=1))
    assert shard.record(1).exact and shard.record(1).user_ids == (3, 2)


def test_snapshot_restores_the_same_lists() -> None:
    rng = random.Random(3)
    changes = random_changes(rng, 500, users=40)
    a = RecentLikersShard(size=5, margin=2, idle_ms=10**12)
    for c in changes[:250]:
        a.apply(c)
    b = RecentLikersShard(5, 2, 10**12, a.snapshot())
    for c in changes[250:]:
        a.apply(c)
        b.apply(c)
    assert [a.record(p) for p in (1, 2)] == [b.record(p) for p in (1, 2)]


def test_stage_emits_one_record_per_touched_post_per_batch() -> None:
    stage = RecentStage(size=2, margin=0, idle_ms=10**12)
    out, _ = stage.on_batch(
        [[change(1, 1, 1, T0_US), change(2, 1, 1, T0_US)], [change(1, 2, 1, T0_US + 1)]]
    )
    assert [(r.post_id, r.user_ids, r.seq) for r in out] == [(1, (2, 1), 2), (2, (1,), 1)]


def test_an_adoption_moves_seq_and_reads_the_list_until_the_stage_holds_enough() -> None:
    from core.records import Adoption

    stage = RecentStage(size=3, margin=2, idle_ms=10**9)
    stage.on_batch([[change(1, 10, 1, T0_US), change(1, 11, 1, T0_US + 1)]])
    # a backfill says the post's edges add up to seq 40: likers before it are unknown
    [forced], _ = stage.on_batch([[Adoption(1, 5, 38)]])
    assert (forced.seq, forced.exact, forced.forced) == (40, False, True)
    later = [change(1, 20 + i, 1, T0_US + 100 + i) for i in range(3)]
    [partial], _ = stage.on_batch([later[:2]])
    assert (partial.seq, partial.exact, partial.forced) == (42, False, False)
    [full], _ = stage.on_batch([later[2:]])
    assert (full.seq, full.exact, full.user_ids) == (43, True, (22, 21, 20))
    # a post the stage never saw: unknown likers too, not an empty exact list
    [seeded], _ = stage.on_batch([[Adoption(2, 4, 4), change(2, 30, 1, T0_US + 200)]])
    assert (seeded.seq, seeded.exact, seeded.forced) == (5, False, True)
