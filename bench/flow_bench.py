"""Benchmarks 3 (``flow_throughput``), 4 (``quix_comparison``), 6 (``two_processes``).

Each benchmark pre-fills its own ``bench.events.<uuid>`` topic (12 partitions), runs
the contenders one after the other on it in child processes, checks that each ended
with the exact like count of every post in Redis, and deletes everything it created
(topics, consumer groups, Redis keys in its own logical db, its Postgres schema, temp
dirs, child processes). Throughput is input messages (events + redelivered
duplicates) per second, from start-up done (``ready``) to the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Metric,
    Result,
    clear_redis,
    cpu_delta,
    cpu_snapshot,
    create_topic,
    delete_groups,
    delete_topics,
    env_for_child,
    free_port,
    isolated_pg_schema,
    isolated_redis_db,
    log,
    ratio,
    settings,
    settle,
    topics_matching,
    truncate_pg,
)
from bench.events import Prefilled, generate_and_produce, redis_matches


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"n": 30_000, "posts": 3_000, "users": 30_000}
    return {"n": 300_000, "posts": 20_000, "users": 200_000}


class Child:
    """A child process whose ``BENCH {...}`` stdout lines are collected."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=subprocess.PIPE,
            stderr=open(log_path, "wb"),  # noqa: SIM115
            env=env_for_child(env),
            cwd=Path(__file__).resolve().parents[1],
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("BENCH "):
                with self._lock:
                    self.events.append(json.loads(line[6:]))

    def event(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return next((e for e in self.events if e.get("event") == name), None)

    def wait_event(self, name: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            e = self.event(name)
            if e is not None:
                return e
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return self.event(name)
            time.sleep(0.05)
        return None

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM this child (by its pid), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class Env:
    tmp: Path
    redis_url: str
    pg_url: str
    hot_topic: str
    dlq_topic: str


@contextmanager
def flow_env() -> Iterator[Env]:
    """Stores of our own for the flows under test (nothing live is touched)."""
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    hot, dlq = f"bench.hot.{tag}", f"bench.dlq.{tag}"
    create_topic(hot, 3)
    create_topic(dlq, 3)
    try:
        with isolated_redis_db() as rurl, isolated_pg_schema() as purl:
            yield Env(tmp, rurl, purl, hot, dlq)
    finally:
        delete_topics([hot, dlq])
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def prefilled(quick: bool) -> Iterator[Prefilled]:
    sz = _sizes(quick)
    pre = generate_and_produce(sz["n"], posts=sz["posts"], users=sz["users"])
    try:
        yield pre
    finally:
        delete_topics([pre.topic])


def _messages(pre: Prefilled) -> int:
    return pre.events + pre.duplicates


def _timeout(quick: bool) -> float:
    return 240.0 if quick else 600.0


def run_raw(pre: Prefilled, tmp: Path, processes: int = 1, quick: bool = False) -> dict[str, Any]:
    """Raw consume + validate, with the partitions split over ``processes`` consumers."""
    parts = list(range(pre.partitions))
    kids = []
    c0 = cpu_snapshot()
    for i in range(processes):
        mine = ",".join(str(p) for p in parts[i::processes])
        kids.append(
            Child(
                ["bench.raw_consume", "--topic", pre.topic, "--partitions", mine],
                tmp / f"raw-{processes}-{i}.log",
            )
        )
    try:
        ends = [k.wait_event("end", _timeout(quick)) for k in kids]
        if any(e is None for e in ends):
            raise RuntimeError("raw consumer did not finish: " + kids[0].log_tail())
        c1 = cpu_snapshot()
        n = sum(e["messages"] for e in ends if e)
        secs = max(e["t"] for e in ends if e) - max(e["ready"] for e in ends if e)
        return {
            "processes": processes,
            "messages": n,
            "seconds": round(secs, 3),
            "rate": n / secs,
            "cpu_s": cpu_delta(c0, c1),
            "cpu_wall_s": round(c1["wall"] - c0["wall"], 3),
        }
    finally:
        for k in kids:
            k.stop()


def run_ours(
    pre: Prefilled, env: Env, *, mode: str = "full", processes: int = 1, quick: bool = False
) -> dict[str, Any]:
    """The counts flow to the end of the topic, with fresh stores and recovery."""
    from core.settings import FlowSettings
    from flows.runner import ensure_recovery

    clear_redis(env.redis_url)
    truncate_pg(env.pg_url)
    run = uuid.uuid4().hex[:6]
    rec = env.tmp / f"recovery-{run}"
    ensure_recovery(FlowSettings(recovery_dir=rec), "counts")  # once, before the processes
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    kids = []
    c0 = cpu_snapshot()
    for i in range(processes):
        args = [
            "bench.flow_entry",
            "--topic",
            pre.topic,
            "--mode",
            mode,
            "--redis-url",
            env.redis_url,
            "--pg-url",
            env.pg_url,
            "--chdb-dir",
            str(env.tmp / f"chdb-{run}-{i}"),
            "--recovery-dir",
            str(rec),
            "--hot-topic",
            env.hot_topic,
            "--dlq-topic",
            env.dlq_topic,
        ]
        if processes > 1:
            args += ["--process-id", str(i), "--addresses", addresses]
        kids.append(Child(args, env.tmp / f"ours-{run}-{i}.log"))
    try:
        ends = [k.wait_event("end", _timeout(quick)) for k in kids]
        if any(e is None for e in ends):
            bad = next(k for k, e in zip(kids, ends, strict=True) if e is None)
            raise RuntimeError(
                f"counts flow ({mode}, {processes}p) did not finish: " + bad.log_tail()
            )
        c1 = cpu_snapshot()
        secs = max(e["t"] for e in ends if e) - max(e["ready"] for e in ends if e)
        ok, total = redis_matches(env.redis_url, pre.truth)
        n = _messages(pre)
        per_proc = [
            {"cpu_s": e.get("cpu_s"), "cores": round(e.get("cpu_s", 0) / (e["t"] - e["ready"]), 2)}
            for e in ends
            if e
        ]
        return {
            "mode": mode,
            "processes": processes,
            "per_process": per_proc,
            "messages": n,
            "seconds": round(secs, 3),
            "rate": n / secs,
            "redis_counts_correct": f"{ok}/{total}",
            "correct": ok == total,
            "cpu_s": cpu_delta(c0, c1),
            "cpu_wall_s": round(c1["wall"] - c0["wall"], 3),
        }
    finally:
        for k in kids:
            k.stop()


def _group_committed(group: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": settings().kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in tps)
    finally:
        c.close()


def run_quix(pre: Prefilled, env: Env, quick: bool = False) -> dict[str, Any]:
    """The Quix Streams job until Redis holds every post's exact count."""
    clear_redis(env.redis_url)
    group = f"bench-quix-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    state = env.tmp / f"quix-state-{group}"
    kid = Child(
        [
            "bench.quix_job",
            "--topic",
            pre.topic,
            "--group",
            group,
            "--redis-url",
            env.redis_url,
            "--state-dir",
            str(state),
        ],
        env.tmp / f"{group}.log",
    )
    c0 = cpu_snapshot()
    try:
        ready = kid.wait_event("ready", 120)
        if ready is None:
            raise RuntimeError("quix job did not start: " + kid.log_tail())
        first = kid.wait_event("first", 120)
        if first is None:
            raise RuntimeError("quix job processed nothing: " + kid.log_tail())
        t_start = first["t"]  # Quix's start-up (topics, group join) is not counted
        deadline = time.monotonic() + _timeout(quick)
        done_t = None
        ok = total = 0
        while time.monotonic() < deadline:
            if kid.proc.poll() is not None:
                raise RuntimeError("quix job exited: " + kid.log_tail())
            ok, total = redis_matches(env.redis_url, pre.truth)
            if ok == total:
                done_t = time.time()
                break
            time.sleep(0.5)
        c1 = cpu_snapshot()
        n = _messages(pre)
        if done_t is None:
            processed = _group_committed(group, pre.topic, pre.partitions)
            secs = time.time() - t_start
            return {
                "messages": processed,
                "seconds": round(secs, 3),
                "rate": processed / secs,
                "completed": False,
                "redis_counts_correct": f"{ok}/{total}",
                "cpu_s": cpu_delta(c0, c1),
                "cpu_wall_s": round(c1["wall"] - c0["wall"], 3),
            }
        secs = done_t - t_start
        return {
            "messages": n,
            "seconds": round(secs, 3),
            "rate": n / secs,
            "completed": True,
            "startup_s": round(t_start - ready["t"], 2),
            "redis_counts_correct": f"{ok}/{total}",
            "correct": True,
            "cpu_s": cpu_delta(c0, c1),
            "cpu_wall_s": round(c1["wall"] - c0["wall"], 3),
        }
    finally:
        kid.stop()
        delete_topics(topics_matching(group))
        delete_groups([group])


def run_profile(pre: Prefilled, env: Env) -> dict[str, Any]:
    """The counts flow under cProfile (``bench.flow_profile``), fresh stores."""
    clear_redis(env.redis_url)
    truncate_pg(env.pg_url)
    run = uuid.uuid4().hex[:6]
    kid = Child(
        [
            "bench.flow_profile",
            "--topic",
            pre.topic,
            "--redis-url",
            env.redis_url,
            "--pg-url",
            env.pg_url,
            "--chdb-dir",
            str(env.tmp / f"chdb-prof-{run}"),
            "--recovery-dir",
            str(env.tmp / f"recovery-prof-{run}"),
            "--hot-topic",
            env.hot_topic,
            "--dlq-topic",
            env.dlq_topic,
            "--messages",
            str(_messages(pre)),
        ],
        env.tmp / f"prof-{run}.log",
    )
    try:
        e = kid.wait_event("profile", 300)
        if e is None:
            raise RuntimeError("flow profile failed: " + kid.log_tail())
        return {k: v for k, v in e.items() if k != "event"}
    finally:
        kid.stop()


def run_trickle_profile(env: Env, rate: float, seconds: float) -> dict[str, Any]:
    """The counts flow under cProfile while events arrive at a live-like ``rate``."""
    from bench.events import trickle_produce

    clear_redis(env.redis_url)
    truncate_pg(env.pg_url)
    run = uuid.uuid4().hex[:6]
    topic = f"bench.trickle.{os.getpid()}.{run}"
    create_topic(topic, 12)
    stop = threading.Event()
    producer = threading.Thread(
        target=trickle_produce, args=(topic, rate, seconds + 30, stop), daemon=True
    )
    try:
        kid = Child(
            [
                "bench.flow_profile",
                "--topic",
                topic,
                "--redis-url",
                env.redis_url,
                "--pg-url",
                env.pg_url,
                "--chdb-dir",
                str(env.tmp / f"chdb-trickle-{run}"),
                "--recovery-dir",
                str(env.tmp / f"recovery-trickle-{run}"),
                "--hot-topic",
                env.hot_topic,
                "--dlq-topic",
                env.dlq_topic,
                "--seconds",
                str(seconds),
            ],
            env.tmp / f"trickle-{run}.log",
        )
        producer.start()
        try:
            e = kid.wait_event("profile", seconds + 120)
            if e is None:
                raise RuntimeError("trickle profile failed: " + kid.log_tail())
            return {k: v for k, v in e.items() if k != "event"} | {"rate": rate}
        finally:
            kid.stop()
    finally:
        stop.set()
        if producer.is_alive():
            producer.join(10)
        delete_topics([topic])


def _cpu_note(r: dict[str, Any]) -> str:
    cpu = r.get("cpu_s", {})
    busy = cpu.get("_machine_busy", 0.0)
    tot = cpu.get("_machine_total", 0.0) or 1.0
    own = cpu.get("bench", 0.0)
    wall = r.get("cpu_wall_s") or r["seconds"]
    others = ", ".join(
        f"{k} {v / wall:.2f}"
        for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
        if not k.startswith("_") and k != "bench" and v / wall >= 0.05
    )
    return (
        f"machine {busy / tot:.0%} busy; contender {own / wall:.2f} cores incl. start-up; "
        f"others (cores): {others}"
    )


# ---------------------------------------------------------------- benchmarks


def bench_flow_throughput(ctx: Any) -> Result:
    res = Result("flow_throughput", ctx.quick)
    settle()
    with prefilled(ctx.quick) as pre, flow_env() as env:
        res.config = {
            **pre.config,
            "flow": "counts flow, 1 process, 1 worker, all production "
            "sinks (Redis, Postgres, embedded chDB, hot/DLQ topics), recovery on",
            "limit": "1 confluent-kafka consumer + LikeEvent.model_validate_json",
        }
        raw = run_raw(pre, env.tmp, 1, ctx.quick)
        log(f"raw consume+validate: {raw['rate']:,.0f} msg/s")
        ours = run_ours(pre, env, mode="full", quick=ctx.quick)
        log(f"counts flow: {ours['rate']:,.0f} msg/s correct={ours['correct']}")
        res.absolute = {"raw_limit": raw, "counts_flow": ours}
        r = ratio(ours["rate"], raw["rate"])
        res.metrics.append(
            Metric(
                label="flow_throughput",
                ours=ours["rate"],
                limit=raw["rate"],
                unit="events/s",
                ratio=r,
                goal="≥ 0.5x raw",
                met=r is not None and r >= 0.5 and ours["correct"],
                ours_text=f"{ours['rate']:,.0f} ev/s ({_messages(pre):,} in "
                f"{ours['seconds']:.1f} s, counts "
                f"{'exact' if ours['correct'] else 'WRONG ' + ours['redis_counts_correct']})",
                limit_text=f"raw consume+decode+validate: {raw['rate']:,.0f} ev/s",
            )
        )
        res.notes.append(f"counts flow: {_cpu_note(ours)}; raw: {_cpu_note(raw)}")
        if not ours["correct"]:
            res.notes.append(f"Redis counts wrong: {ours['redis_counts_correct']} posts exact")
        try:
            if ctx.quick:
                prof = run_profile(pre, env)
            else:
                with prefilled(True) as small:
                    prof = run_profile(small, env)
            res.absolute["flow_profile"] = prof
            shares = ", ".join(f"{k} {v:.0%}" for k, v in list(prof["share"].items())[:10])
            res.notes.append(
                "Where the flow's time goes (cProfile of the same flow, all sinks, "
                f"{prof['us_per_message_profiled']:.0f} µs/event profiled): {shares}"
            )
        except Exception as e:  # diagnostic only
            res.notes.append(f"flow profile not taken: {e}")
        try:
            rate = (ctx.api_max_rate or 600.0) / 2
            tp = run_trickle_profile(env, rate, 10.0 if ctx.quick else 20.0)
            res.absolute["flow_profile_trickle"] = tp
            shares = ", ".join(f"{k} {v:.0%}" for k, v in list(tp["share"].items())[:10])
            res.notes.append(
                f"Same flow while events trickle in at {rate:.0f}/s (the freshness load): "
                f"{tp['us_per_message_profiled']:.0f} µs/event profiled, against "
                f"{res.absolute.get('flow_profile', {}).get('us_per_message_profiled', 0):.0f} "
                f"in bulk: {shares}"
            )
        except Exception as e:  # diagnostic only
            res.notes.append(f"trickle profile not taken: {e}")
    return res


def bench_quix_comparison(ctx: Any) -> Result:
    import importlib.metadata

    res = Result("quix_comparison", ctx.quick)
    settle()
    with prefilled(ctx.quick) as pre, flow_env() as env:
        qv = importlib.metadata.version("quixstreams")
        res.config = {
            **pre.config,
            "job": "decode+validate, dedupe by edge version, per-post (count, seq), "
            "Redis compare-and-set (sinks.redis_counts.write_counts)",
            "ours": "counts flow, 1 process, Redis count sink only (other outputs "
            "discarded; windows and hot detection still computed)",
            "quix": f"quixstreams {qv}: RocksDB state + changelog topics, group_by "
            "repartition topic, BatchingSink, commit_interval 2 s",
            "completion": "ours: process end at end of topic; Quix: first time Redis "
            "holds every post's exact count (polled every 0.5 s)",
        }
        ours = run_ours(pre, env, mode="redis", quick=ctx.quick)
        log(f"ours (redis only): {ours['rate']:,.0f} msg/s correct={ours['correct']}")
        quix = run_quix(pre, env, ctx.quick)
        log(f"quix: {quix['rate']:,.0f} msg/s completed={quix['completed']}")
        raw = run_raw(pre, env.tmp, 1, ctx.quick)
        res.absolute = {"ours_redis_only": ours, "quix": quix, "raw_limit": raw}
        r = ratio(ours["rate"], quix["rate"])
        res.metrics.append(
            Metric(
                label="quix_comparison",
                ours=ours["rate"],
                limit=quix["rate"],
                unit="events/s",
                ratio=r,
                goal="ours ≥ 2x Quix",
                met=r is not None and r >= 2.0 and ours["correct"],
                ours_text=f"{ours['rate']:,.0f} ev/s ({ours['rate'] / raw['rate']:.2f}x raw)",
                limit_text=f"Quix Streams {qv}: {quix['rate']:,.0f} ev/s"
                + ("" if quix["completed"] else " (did not finish; rate from committed offsets)")
                + f"; raw {raw['rate']:,.0f} ev/s",
            )
        )
        res.notes.append(f"ours: {_cpu_note(ours)}; Quix: {_cpu_note(quix)}")
    return res


def bench_two_processes(ctx: Any) -> Result:
    res = Result("two_processes", ctx.quick)
    settle()
    with prefilled(ctx.quick) as pre, flow_env() as env:
        res.config = {
            **pre.config,
            "flow": "counts flow, all production sinks, 1 worker per "
            "process; 2 processes via cli_main(process_id, addresses)",
            "limit": "raw consume+validate with the partitions split over 2 "
            "processes vs 1: the scaling this machine allows",
        }
        one = run_ours(pre, env, processes=1, quick=ctx.quick)
        log(f"ours 1p: {one['rate']:,.0f} msg/s")
        two = run_ours(pre, env, processes=2, quick=ctx.quick)
        log(f"ours 2p: {two['rate']:,.0f} msg/s")
        raw1 = run_raw(pre, env.tmp, 1, ctx.quick)
        raw2 = run_raw(pre, env.tmp, 2, ctx.quick)
        log(f"raw 1p {raw1['rate']:,.0f} 2p {raw2['rate']:,.0f} msg/s")
        res.absolute = {"ours_1p": one, "ours_2p": two, "raw_1p": raw1, "raw_2p": raw2}
        sp = ratio(two["rate"], one["rate"])
        raw_sp = ratio(raw2["rate"], raw1["rate"])
        res.metrics.append(
            Metric(
                label="two_processes",
                ours=sp,
                limit=raw_sp,
                unit="speed-up",
                ratio=ratio(sp, raw_sp),
                goal="2 processes ≥ 1.6x 1 process",
                met=sp is not None and sp >= 1.6 and one["correct"] and two["correct"],
                ours_text=f"{sp:.2f}x ({two['rate']:,.0f} vs {one['rate']:,.0f} ev/s)",
                limit_text=f"raw consume+validate 2p/1p: {raw_sp:.2f}x ({raw2['rate']:,.0f} vs "
                f"{raw1['rate']:,.0f} ev/s)",
            )
        )
        res.notes.append(f"1p: {_cpu_note(one)}; 2p: {_cpu_note(two)}")
        if not (one["correct"] and two["correct"]):
            res.notes.append(
                f"count mismatch: 1p {one['redis_counts_correct']}, "
                f"2p {two['redis_counts_correct']}"
            )
    return res
