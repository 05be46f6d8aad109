"""The Quix Streams job (:mod:`bench.quix_job`) on a pre-filled topic, until Redis holds
every post's exact count; its topics and consumer group are removed after."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from bench import names
from bench.children import Child, Event
from bench.cpu import CpuSnapshot, cpu_delta, cpu_snapshot
from bench.events import Prefilled, redis_matches
from bench.flow_runs import FlowEnv, timeout
from bench.kafka_admin import committed_total, delete_groups, delete_topics, topics_matching

POLL_S = 0.5
COMMIT_INTERVAL_S = 2.0  # Quix writes Redis at checkpoints: completion is seen within this


@dataclass(frozen=True)
class QuixRun:
    """Messages per second from the first message processed to completion."""

    messages: int
    seconds: float
    rate: float
    completed: bool
    redis_counts_correct: str
    cpu_s: dict[str, float]
    cpu_wall_s: float
    startup_s: float | None = None


def _started(kid: Child) -> tuple[Event, Event]:
    ready = kid.wait_event("ready", 120)
    if ready is None:
        raise RuntimeError("quix job did not start: " + kid.log_tail())
    first = kid.wait_event("first", 120)
    if first is None:
        raise RuntimeError("quix job processed nothing: " + kid.log_tail())
    return ready, first


def _until_exact(kid: Child, pre: Prefilled, env: FlowEnv, quick: bool) -> tuple[float | None, str]:
    """When Redis first held every exact count (None if not in time), and how many did."""
    deadline = time.monotonic() + timeout(quick)
    ok = total = 0
    while time.monotonic() < deadline:
        if kid.proc.poll() is not None:
            raise RuntimeError("quix job exited: " + kid.log_tail())
        ok, total = redis_matches(env.redis_url, pre.truth)
        if ok == total:
            return time.time(), f"{ok}/{total}"
        time.sleep(POLL_S)
    return None, f"{ok}/{total}"


def _result(
    pre: Prefilled, group: str, t_start: float, done: float | None, correct: str, c0: CpuSnapshot
) -> QuixRun:
    c1 = cpu_snapshot()
    # not finished in time: its rate from the offsets it committed
    n = pre.messages if done else committed_total(group, pre.topic, pre.partitions)
    secs = (done or time.time()) - t_start
    return QuixRun(
        messages=n,
        seconds=round(secs, 3),
        rate=n / secs,
        completed=done is not None,
        redis_counts_correct=correct,
        cpu_s=cpu_delta(c0, c1),
        cpu_wall_s=round(c1.wall - c0.wall, 3),
    )


def run_quix(pre: Prefilled, env: FlowEnv, quick: bool = False) -> QuixRun:
    """The Quix Streams job until Redis holds every post's exact count."""
    env.fresh()
    group = names.group("quix")
    s = env.settings(pre.topic, group)
    args = ["bench.quix_job", "--group", group, "--state-dir", str(env.tmp / f"state-{group}")]
    args += ["--commit-interval", str(COMMIT_INTERVAL_S)]
    kid = Child(args, env.tmp / f"{group}.log", s)
    c0 = cpu_snapshot()
    try:
        ready, first = _started(kid)
        t_start = float(first["t"])  # Quix's start-up (topics, group join) is not counted
        done, correct = _until_exact(kid, pre, env, quick)
        res = _result(pre, group, t_start, done, correct, c0)
        return replace(res, startup_s=round(t_start - ready["t"], 2)) if done else res
    finally:
        kid.stop()
        delete_topics(topics_matching(group))
        delete_groups([group])
