"""``flows.routing`` against Bytewax itself: where its stateful operators run a key, the
partitions' stage keys spread evenly and each read where its stage runs, and a recovery
store with the old keys is refused."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.recovery import init_db_dir
from bytewax.testing import cluster_main

from core.settings import FlowSettings
from flows.kafka_input import kafka_source
from flows.routing import SALTS, SPREAD, find_salt, partition_key, reads_partition, worker_of
from flows.runner import OldStageKeys, refuse_old_stage_keys

KEYS = [str(i) for i in range(40)] + [partition_key(p) for p in range(24)]
KEYS += ["", "x" * 7, "y" * 8, "z" * 9, "π-ü", "likes:" * 11]


def _bytewax_placement(workers: int) -> dict[str, int]:
    """The worker Bytewax's ``stateful_map`` runs each of :data:`KEYS` on."""
    thread_worker: dict[int, int] = {}
    key_thread: dict[str, int] = {}

    class Part(StatelessSourcePartition[tuple[str, str]]):
        def __init__(self, worker: int) -> None:
            self.worker, self.done = worker, False

        def next_batch(self) -> list[tuple[str, str]]:
            thread_worker[threading.get_ident()] = self.worker
            if self.done:
                raise StopIteration()
            self.done = True
            return [(k, k) for k in KEYS] if self.worker == 0 else []

    class Source(DynamicSource[tuple[str, str]]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Part:
            return Part(worker_index)

    def seen(state: Any, key: str) -> tuple[Any, None]:
        key_thread[key] = threading.get_ident()
        return state, None

    flow = Dataflow("routing_check")
    placed = op.stateful_map("place", op.input("keys", flow, Source()), seen)
    op.inspect("done", placed, lambda *_: None)
    cluster_main(flow, addresses=[], proc_id=0, worker_count_per_proc=workers)
    return {k: thread_worker[t] for k, t in key_thread.items()}


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_worker_of_is_where_bytewax_runs_a_key(workers: int) -> None:
    placed = _bytewax_placement(workers)
    assert placed == {k: worker_of(k, workers) for k in KEYS}
    old = [placed[str(p)] for p in range(12)]
    new = [placed[partition_key(p)] for p in range(12)]
    assert new == [p % workers for p in range(12)], "the stages spread evenly"
    if workers == 2:
        assert old.count(0) == 3, "what the plain keys did: 3 of 12 stages on worker 0"


def test_partition_keys_are_permanent_and_spread_for_every_worker_count() -> None:
    # recovery state is stored under these: changing one loses that partition's state
    assert [partition_key(p) for p in range(4)] == ["0:347", "1:2368", "2:491", "3:2321"]
    assert list(SALTS) == [find_salt(p) for p in range(len(SALTS))], "the stored salts"
    assert partition_key(len(SALTS)) == f"{len(SALTS)}:{find_salt(len(SALTS))}"
    for workers in (1, 2, 3, 4, 5, 6, 7, 8, 12):
        assert SPREAD % workers == 0
        assert [worker_of(partition_key(p), workers) for p in range(48)] == [
            p % workers for p in range(48)
        ]


def test_each_partition_has_exactly_one_reader() -> None:
    for processes in (1, 2, 3, 5):
        for p in range(30):
            readers = [i for i in range(processes) if reads_partition(p, (i, processes))]
            assert readers == [worker_of(partition_key(p), processes)]
    assert all(reads_partition(p, None) for p in range(30))


def test_a_flow_process_lists_only_the_partitions_it_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = [f"{p}-likes.events" for p in range(12)]
    monkeypatch.setattr(KafkaSource, "list_parts", lambda self: parts)
    listed = []
    for index in range(2):
        s = FlowSettings().model_copy(update={"reader": (index, 2)})
        listed.append(kafka_source(s, batches=True).list_parts())
    assert listed == [parts[0::2], parts[1::2]]
    assert kafka_source(FlowSettings(), batches=True).list_parts() == parts


def _store(tmp_path: Path, keys: list[str], step: str = "likes_counts.read_events.decode") -> Path:
    tmp_path.mkdir()
    init_db_dir(tmp_path, 2)
    with sqlite3.connect(tmp_path / "part-1.sqlite3") as db:
        db.executemany(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, 1, NULL)",
            [(step, k) for k in keys],
        )
    return tmp_path


def test_a_store_with_the_old_stage_keys_is_refused(tmp_path: Path) -> None:
    refuse_old_stage_keys(_store(tmp_path / "new", [partition_key(p) for p in range(12)]))
    refuse_old_stage_keys(_store(tmp_path / "empty", []))
    with pytest.raises(OldStageKeys, match=r"partitions 3, 11 under keys .* flows-reset"):
        refuse_old_stage_keys(_store(tmp_path / "old", ["11", "3", partition_key(5)]))
    # only a stage's rows left (a decode keeps no state): still refused
    with pytest.raises(OldStageKeys, match=r"partitions 7 under"):
        refuse_old_stage_keys(_store(tmp_path / "stage", ["7"], "likes_fanout.dedupe"))
    # keys of steps not keyed by partition (the count shards) are not partitions
    refuse_old_stage_keys(_store(tmp_path / "shards", ["7"], "likes_counts.count_posts"))
