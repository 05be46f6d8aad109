"""A backfill's flow-state records: the counts flow adopts the edge store's truth at their
position, so drift in its own state does not come back with the next event."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource

from core.kafka_partition import edge_key, murmur2, partition_for
from core.records import CountUpdate, DeadLetter, latest_per_post
from core.settings import FlowSettings
from flows.counts import CountsSinks, build_flow
from flows.decode import FlowState, PartitionEvents, decode_message
from flows.partition_stage import PartitionStage
from schemas.events import LikeEvent
from tests.flows.conftest import Runner
from tests.flows.helpers import PARTITIONS, T0_MS, event, partition_of, to_messages

TTL_S = 10
SETTINGS = FlowSettings(count_shards=4, dedupe_ttl_s=TTL_S, hot_threshold=10_000)


def test_murmur2_matches_the_java_clients_vectors() -> None:
    """Kafka's own ``UtilsTest.testMurmur2`` cases (signed ints in Java)."""
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data
    assert partition_for(b"21", 6) == (-973932308 & 0x7FFFFFFF) % 6
    with pytest.raises(ValueError):
        partition_for(b"x", 0)


def _record(partition: int, posts: list[tuple[int, int, int]], record_id: int = 1) -> FlowState:
    return FlowState(record_id, tuple(posts))


def _like(post: int, user: int, version: int, ms: int = T0_MS) -> LikeEvent:
    return LikeEvent.model_validate(event(post, user, version, ms))


def test_stage_emits_the_difference_once_and_keeps_the_truth() -> None:
    stage = PartitionStage(ttl_ms=60_000, window_ms=1000, lateness_ms=0, emit_ms=1000, adopt=True)
    evs: list[LikeEvent | FlowState] = [_like(5, 1, 1), _like(5, 2, 1), _like(5, 2, 2)]
    stage.on_batch([PartitionEvents(0, evs)])
    # the flow counted 1 liked edge, seq 1 + 2 = 3; the truth says 4 liked edges, seq 9
    out, _ = stage.on_batch([PartitionEvents(0, [_record(0, [(5, 4, 9), (6, 0, 0)])])])
    [adopted] = [o.adopted for o in out]
    assert [(a.post_id, a.delta, a.seq_inc) for a in adopted] == [(5, 3, 6)]
    again, _ = stage.on_batch([PartitionEvents(0, [_record(0, [(5, 1, 1)])])])
    assert [o.adopted for o in again] == [[]], "a redelivered record changes nothing"
    after, _ = stage.on_batch([PartitionEvents(0, [_like(5, 9, 1)])])
    assert [(a.delta, a.seq_inc) for o in after for a in o.accepted] == [(1, 1)]
    resumed = PartitionStage(
        ttl_ms=60_000, window_ms=1000, lateness_ms=0, emit_ms=1000, adopt=True,
        snapshot=stage.snapshot(),
    )  # fmt: skip
    same, _ = resumed.on_batch([PartitionEvents(0, [_record(0, [(5, 5, 10)], record_id=2)])])
    assert [o.adopted for o in same] == [[]], "truth plus the later like: nothing to correct"


def test_stages_without_adopt_or_with_older_state_ignore_records() -> None:
    stage = PartitionStage(ttl_ms=60_000, window_ms=1000, lateness_ms=0, emit_ms=1000)
    out, _ = stage.on_batch([PartitionEvents(0, [_record(0, [(5, 4, 9)])])])
    assert [(o.accepted, o.adopted) for o in out] == [([], [])]
    # state saved before contributions were kept cannot say what to correct: unknown
    old = PartitionStage(
        ttl_ms=60_000, window_ms=1000, lateness_ms=0, emit_ms=1000, adopt=True,
        snapshot=stage.snapshot()[:3],
    )  # fmt: skip
    out, _ = old.on_batch([PartitionEvents(0, [_like(5, 1, 1), _record(0, [(5, 4, 9)])])])
    assert [o.adopted for o in out] == [[]]
    assert old.snapshot()[3] is None, "and stays unknown across restarts"


def _message(value: dict[str, Any] | bytes, partition: int, offset: int) -> Any:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return KafkaSourceMessage(
        key=b"5:1", value=raw, topic="likes.events", partition=partition, offset=offset
    )


def test_decode_checks_the_records_partition() -> None:
    k = partition_for(edge_key(5, 1), 6)
    rec = {
        "event_id": str(uuid.uuid4()),
        "action": "FlowState",
        "partition": k,
        "partitions": 6,
        "posts": [[5, 1, 1]],
    }
    ok = decode_message(_message(rec, k, 0))
    assert isinstance(ok, tuple) and isinstance(ok[1], FlowState)
    assert ok[1].posts == ((5, 1, 1),)
    wrong = decode_message(_message(rec, k + 1, 0))
    assert isinstance(wrong, DeadLetter) and f"partition {k} on {k + 1}" in wrong.reason
    bad = decode_message(_message({**rec, "posts": [[5, -1, 1]]}, k, 0))
    assert isinstance(bad, DeadLetter) and bad.reason.startswith("invalid event: posts")


def test_latest_per_post_keeps_a_forced_value_and_what_follows_it() -> None:
    ups = [
        CountUpdate(1, 7, 20),
        CountUpdate(1, 5, 15, forced=True),
        CountUpdate(1, 6, 16),
        CountUpdate(2, 1, 3),
        CountUpdate(2, 2, 4),
    ]
    [one, two] = latest_per_post(ups)
    assert (one.count, one.seq, one.forced) == (6, 16, True)
    assert (two.count, two.seq, two.forced) == (2, 4, False)


def _store(updates: list[CountUpdate]) -> dict[int, tuple[int, int]]:
    """What the Redis and Postgres count sinks end with: compare-and-set on ``seq``,
    forced values written as they are (updates of one post arrive in emission order)."""
    stored: dict[int, tuple[int, int]] = {}
    for u in updates:
        cur = stored.get(u.post_id)
        if u.forced or cur is None or u.seq > cur[1]:
            stored[u.post_id] = (u.count, u.seq)
    return stored


def _records_for(edges: dict[tuple[int, int], tuple[int, bool]]) -> list[Any]:
    """Flow-state messages with the truth of ``edges``, one per partition, as the
    test's partitioning (``partition_of``) places the edges' events."""
    per: dict[int, dict[int, list[int]]] = defaultdict(dict)
    for (post, user), (version, liked) in edges.items():
        k = partition_of({"post_id": post, "user_id": user})
        cell = per[k].setdefault(post, [0, 0])
        cell[0] += int(liked)
        cell[1] += version
    return [
        _message(
            {
                "event_id": str(uuid.uuid4()),
                "action": "FlowState",
                "partition": k,
                "partitions": PARTITIONS,
                "posts": [[p, n, v] for p, (n, v) in sorted(posts.items())],
            },
            k,
            10_000 + k,
        )
        for k, posts in sorted(per.items())
    ]


def test_a_duplicate_after_the_ttl_is_undone_by_adoption(entry_point: Runner) -> None:
    """The case of issue 7: a duplicate arriving after the dedupe TTL inflates the flow's
    own count and ``seq``; after the flow-state records, the next like is counted from the
    truth, not from the drift."""
    post = 5
    first = [event(post, u, 1, T0_MS + u) for u in range(1, 7)] + [event(post, 2, 2, T0_MS + 9)]
    later_ms = T0_MS + (TTL_S + 10) * 1000  # every partition moves past the TTL
    filler = [event(99, u, 1, later_ms + u) for u in range(1, 41)]
    duplicate = dict(first[0])  # user 1's like, long since evicted from dedupe
    edges = {(e["post_id"], e["user_id"]): (e["edge_version"], e["action"] == "LikeCreated")
             for e in first + filler}  # fmt: skip
    records = _records_for(edges)
    after = [event(post, 7, 1, later_ms + 500)]
    pause = TestingSource.PAUSE(timedelta(milliseconds=300))  # each part its own batches

    def run(with_records: bool) -> list[CountUpdate]:
        msgs = [
            *to_messages(first + filler),
            pause,  # the stage sweeps the edges idle beyond the TTL
            *to_messages([duplicate]),
            pause,
            *(records if with_records else []),
            pause,
            *to_messages(after),
        ]
        counts: list[CountUpdate] = []
        dead: list[DeadLetter] = []
        sinks = CountsSinks(TestingSink(dead), None, None, [TestingSink(counts)], [TestingSink([])])
        entry_point(build_flow(SETTINGS, sinks, TestingSource(msgs, batch_size=8)))
        assert not dead
        return counts

    # without the records the drift stays: 7 counted at seq 9 (one like and 1 too many)
    assert _store(run(with_records=False))[post] == (7, 9)
    counts = run(with_records=True)
    mine = [u for u in counts if u.post_id == post]
    assert any(u.count == 6 and not u.forced for u in mine), "the duplicate was counted"
    assert any(u.forced for u in mine), f"the flow adopted the records: {mine}"
    # 5 liked edges and sum(version) 7 at the records; then user 7 likes
    assert _store(counts)[post] == (6, 8)
    assert _store(counts)[99] == (40, 40)


def test_the_fanout_dedupe_stage_adopts_records_for_the_recent_likers() -> None:
    from core.records import Adoption, LikerChange
    from flows.fanout_stages import DedupeStage

    stage = DedupeStage(60_000)
    stage.on_batch([PartitionEvents(0, [_like(5, 1, 1), _like(5, 2, 1), _like(5, 2, 2)])])
    # the flow saw seq 1 + 2 = 3; the truth at the record is seq 9 (4 liked edges)
    [out], _ = stage.on_batch([PartitionEvents(0, [_like(7, 1, 1), _record(0, [(5, 4, 9)])])])
    kinds = [type(c) for c in out.changes]
    assert kinds == [LikerChange, Adoption], "the adoption in its place among the changes"
    assert out.changes[1] == Adoption(5, 3, 6)
    [again], _ = stage.on_batch([PartitionEvents(0, [_record(0, [(5, 1, 1)])])])
    assert again.changes == [], "a redelivered record changes nothing"
    resumed = DedupeStage(60_000, stage.snapshot())
    [same], _ = resumed.on_batch([PartitionEvents(0, [_record(0, [(5, 4, 9)], record_id=2)])])
    assert same.changes == [], "the truth is held across a restart"
    [dup], _ = resumed.on_batch([PartitionEvents(0, [_like(5, 2, 2)])])
    assert dup.accepted == [], "and so is the dedupe state"
    # a snapshot from before adoption (the dedupe's alone) resumes; records are ignored
    older = DedupeStage(60_000, stage.dedupe.snapshot())
    [out], _ = older.on_batch([PartitionEvents(0, [_like(5, 2, 2), _record(0, [(5, 4, 9)])])])
    assert (out.accepted, out.changes) == ([], [])
    assert older.snapshot()[1] is None, "and stays unknown across restarts"
