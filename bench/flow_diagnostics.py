"""Where the counts flow's time goes: :mod:`bench.flow_profile` on a pre-filled topic
(bulk) and on a topic fed at a live-like rate (trickle). Diagnostic only."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, replace

from bench import names
from bench.children import Child, Event
from bench.events import Prefilled, trickle_produce
from bench.flow_runs import FlowEnv
from bench.kafka_admin import create_topic, delete_topics


@dataclass(frozen=True)
class FlowProfile:
    """Self time shares by module, and the cost per input message under the profiler."""

    us_per_message_profiled: float
    share: dict[str, float]
    profiled_s: float
    wall_s_profiled: float
    messages: int
    process_cpu_us_per_message_profiled: float
    rate: float | None = None  # trickle mode: the input rate


def _start(env: FlowEnv, topic: str, args: list[str]) -> Child:
    env.fresh()
    run = f"prof-{uuid.uuid4().hex[:6]}"
    return Child(["bench.flow_profile", *args], env.tmp / f"{run}.log", env.settings(topic, run))


def _collect(kid: Child, timeout: float) -> FlowProfile:
    try:
        e: Event | None = kid.wait_event("profile", timeout)
        if e is None:
            raise RuntimeError("flow profile failed: " + kid.log_tail())
        return FlowProfile(**{k: v for k, v in e.items() if k != "event"})
    finally:
        kid.stop()


def run_profile(pre: Prefilled, env: FlowEnv) -> FlowProfile:
    """The counts flow under cProfile over a pre-filled topic, fresh stores."""
    return _collect(_start(env, pre.topic, ["--messages", str(pre.messages)]), 300)


def run_trickle_profile(env: FlowEnv, rate: float, seconds: float) -> FlowProfile:
    """The counts flow under cProfile while events arrive at a live-like ``rate``."""
    topic = names.topic("trickle")
    create_topic(topic, 12)
    stop = threading.Event()
    producer = threading.Thread(
        target=trickle_produce, args=(topic, rate, seconds + 30, stop), daemon=True
    )
    try:
        kid = _start(env, topic, ["--seconds", str(seconds)])
        producer.start()
        return replace(_collect(kid, seconds + 120), rate=rate)
    finally:
        stop.set()
        if producer.is_alive():
            producer.join(10)
        delete_topics([topic])
