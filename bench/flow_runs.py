"""Runs on a pre-filled topic, each in child processes: the counts flow, and the raw
consume-and-validate limit beside it, with CPU accounting and a check of every count.

The flow's settings are one ``FlowSettings`` object, the stack's own with
``model_copy(update=...)`` pointing it at the benchmark's topic and isolated stores
(:class:`FlowEnv`); children get it as ``LIKES_*`` variables
(:func:`bench.children.settings_env`).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import names
from bench.children import Child, free_port, wait_all
from bench.cpu import cpu_delta, cpu_snapshot
from bench.events import Prefilled, redis_matches
from bench.flow_build import Mode
from bench.isolation import clear_redis, isolated_pg_schema, isolated_redis_db, truncate_counts
from bench.kafka_admin import create_topic, delete_topics
from core.settings import FlowSettings
from flows.runner import ensure_recovery


@dataclass(frozen=True)
class FlowEnv:
    """Stores of our own for the flows under test (nothing live is touched)."""

    tmp: Path
    redis_url: str
    pg_url: str
    hot_topic: str
    dlq_topic: str

    def settings(self, topic: str, run: str) -> FlowSettings:
        """The stack's flow settings, reading ``topic`` and writing only our stores."""
        return FlowSettings().model_copy(
            update={
                "events_topic": topic,
                "recovery_dir": self.tmp / f"recovery-{run}",
                "clickhouse_url": f"chdb://{self.tmp / f'chdb-{run}'}",
                "redis_url": self.redis_url,
                "postgres_url": self.pg_url,
                "hot_topic": self.hot_topic,
                "dlq_topic": self.dlq_topic,
            }
        )

    def fresh(self) -> None:
        """Empty the count stores between runs."""
        clear_redis(self.redis_url)
        truncate_counts(self.pg_url)


@contextmanager
def flow_env() -> Iterator[FlowEnv]:
    """A temp dir, hot and DLQ topics, a Redis db and a Postgres schema; removed after."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    hot, dlq = names.topic("hot"), names.topic("dlq")
    create_topic(hot, 3)
    create_topic(dlq, 3)
    try:
        with isolated_redis_db() as rurl, isolated_pg_schema() as purl:
            yield FlowEnv(tmp, rurl, purl, hot, dlq)
    finally:
        delete_topics([hot, dlq])
        shutil.rmtree(tmp, ignore_errors=True)


def timeout(quick: bool) -> float:
    """How long a run over a pre-filled topic may take."""
    return 240.0 if quick else 600.0


@dataclass(frozen=True)
class RawRun:
    """Raw consume + validate over the topic."""

    processes: int
    messages: int
    seconds: float
    rate: float
    cpu_s: dict[str, float]
    cpu_wall_s: float


def run_raw(pre: Prefilled, env: FlowEnv, processes: int = 1, quick: bool = False) -> RawRun:
    """Raw consume + validate, with the partitions split over ``processes`` consumers."""
    s = env.settings(pre.topic, "raw")
    parts = list(range(pre.partitions))
    c0 = cpu_snapshot()
    kids = [
        Child(
            ["bench.raw_consume", "--partitions", ",".join(str(p) for p in parts[i::processes])],
            env.tmp / f"raw-{processes}-{i}.log",
            s,
        )
        for i in range(processes)
    ]
    try:
        ends = wait_all(kids, "end", timeout(quick), "raw consumer")
        c1 = cpu_snapshot()
        n = sum(int(e["messages"]) for e in ends)
        secs = max(e["t"] for e in ends) - max(e["ready"] for e in ends)
        return RawRun(
            processes, n, round(secs, 3), n / secs, cpu_delta(c0, c1), round(c1.wall - c0.wall, 3)
        )
    finally:
        for k in kids:
            k.stop()


@dataclass(frozen=True)
class FlowRun:
    """The counts flow to the end of the topic."""

    mode: str
    processes: int
    per_process: list[dict[str, float]]
    messages: int
    seconds: float
    rate: float
    redis_counts_correct: str
    correct: bool
    cpu_s: dict[str, float]
    cpu_wall_s: float


def _flow_children(
    s: FlowSettings, env: FlowEnv, mode: Mode, processes: int, run: str
) -> list[Child]:
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    kids = []
    for i in range(processes):
        # embedded chDB is one process's: a directory each
        mine = s.model_copy(update={"clickhouse_url": f"chdb://{env.tmp / f'chdb-{run}-{i}'}"})
        args = ["bench.flow_entry", "--mode", mode]
        if processes > 1:
            args += ["--process-id", str(i), "--addresses", addresses]
        kids.append(Child(args, env.tmp / f"ours-{run}-{i}.log", mine))
    return kids


def run_ours(
    pre: Prefilled, env: FlowEnv, *, mode: Mode = "full", processes: int = 1, quick: bool = False
) -> FlowRun:
    """The counts flow to the end of the topic, with fresh stores and recovery."""
    env.fresh()
    run = uuid.uuid4().hex[:6]
    s = env.settings(pre.topic, run)
    ensure_recovery(s, "counts")  # once, before the processes
    c0 = cpu_snapshot()
    kids = _flow_children(s, env, mode, processes, run)
    try:
        ends = wait_all(kids, "end", timeout(quick), f"counts flow ({mode}, {processes}p)")
        c1 = cpu_snapshot()
        secs = max(e["t"] for e in ends) - max(e["ready"] for e in ends)
        ok, total = redis_matches(env.redis_url, pre.truth)
        per_proc = [
            {"cpu_s": e["cpu_s"], "cores": round(e["cpu_s"] / (e["t"] - e["ready"]), 2)}
            for e in ends
        ]
        return FlowRun(
            mode=mode,
            processes=processes,
            per_process=per_proc,
            messages=pre.messages,
            seconds=round(secs, 3),
            rate=pre.messages / secs,
            redis_counts_correct=f"{ok}/{total}",
            correct=ok == total,
            cpu_s=cpu_delta(c0, c1),
            cpu_wall_s=round(c1.wall - c0.wall, 3),
        )
    finally:
        for k in kids:
            k.stop()
