"""The counts job written with Quix Streams 3.x, for ``quix_comparison``.

The same work as the counts flow's count path, done the way Quix Streams documents it:
decode and validate each value with the same ``LikeEvent`` model, dedupe by edge
version in RocksDB state keyed by the message key (the edge, ``post:user``), re-key by
post with ``group_by`` (Quix's repartition topic), keep ``(count, seq)`` per post in
state, and write counts to Redis with the very same compare-and-set
(``sinks.redis_counts.write_counts``) from a ``BatchingSink`` flushed at each checkpoint.

Fairness: the consumer gets the flows' own consumer settings
(``flows.kafka_input.consumer_config``) except the offset reset policy, which Quix sets
itself (``earliest``, for a fresh group); state is backed by changelog topics (Quix's
default, its equivalent of Bytewax recovery snapshots); at-least-once, as ours. Quix
checkpoints every ``--commit-interval`` seconds (``bench.quix_run.COMMIT_INTERVAL_S``)
and its sink writes Redis only then, so completion is seen within that interval; the
counts flow snapshots every ``snapshot_interval_s`` but writes Redis after every batch.

``python -m bench.quix_job --group G --state-dir D --commit-interval S``, topic and Redis from
``FlowSettings()`` (the ``LIKES_*`` variables); prints ``BENCH {"event": "ready"}``
just before ``app.run()`` and ``{"event": "first"}`` when the first message was
processed (after topic creation and the consumer group join, which are start-up);
runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import redis
from pydantic import ValidationError
from quixstreams import Application, State
from quixstreams.sinks import BatchingSink, SinkBatch

from bench.children import emit
from core.records import CountUpdate
from core.settings import FlowSettings
from flows.kafka_input import consumer_config
from schemas.events import LikeEvent
from sinks.redis_counts import write_counts

Pair = list[int]  # what the state keeps: [version, liked] per edge, [count, seq] per post


class RedisCountCasSink(BatchingSink):
    """Counts into Redis with the production compare-and-set, one call per checkpoint."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def setup(self) -> None:
        self.client = redis.Redis.from_url(self.url, socket_timeout=10)

    def write(self, batch: SinkBatch) -> None:
        v = [i.value for i in batch]
        write_counts(self.client, [CountUpdate(x["post_id"], x["count"], x["seq"]) for x in v])


def decode(value: bytes) -> LikeEvent | None:
    """The event, or None (ours dead-letters these; the benchmark topic has none)."""
    try:
        return LikeEvent.model_validate_json(value)
    except ValidationError:
        return None


def dedupe(ev: LikeEvent, state: State[str, Pair]) -> dict[str, int] | None:
    """The count change of a new edge version, None for a duplicate or an older one."""
    last = state.get("v")
    liked = int(ev.liked)
    if last is None:
        delta, inc = (1 if liked else -1), 1
    else:
        if ev.edge_version <= last[0]:
            return None
        delta, inc = liked - last[1], ev.edge_version - last[0]
    state.set("v", [ev.edge_version, liked])
    return {"post_id": ev.post_id, "delta": delta, "inc": inc}


def count(v: dict[str, int], state: State[str, Pair]) -> dict[str, int]:
    """The post's new ``(count, seq)``."""
    c, q = state.get("c", [0, 0]) or [0, 0]
    c, q = c + v["delta"], q + v["inc"]
    state.set("c", [c, q])
    return {"post_id": v["post_id"], "count": c, "seq": q}


def _on_processed(first: list[float]) -> Callable[[str, int, int], None]:
    """Reports the first message processed (the end of Quix's start-up)."""

    def hook(topic: str, partition: int, offset: int) -> None:
        if not first:
            first.append(time.time())
            emit("first", t=first[0])

    return hook


def build_app(s: FlowSettings, group: str, state_dir: str, commit_s: float) -> Application:
    """The Quix application: decode, dedupe per edge, re-key by post, count, sink."""
    extra = {k: v for k, v in consumer_config(s).items() if k != "auto.offset.reset"}
    app = Application(
        broker_address=s.kafka_bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=commit_s,
        state_dir=state_dir,
        consumer_extra_config=extra,
        loglevel="WARNING",
        on_message_processed=_on_processed([]),
    )
    topic = app.topic(s.events_topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(decode).filter(lambda ev: ev is not None)
    sdf = sdf.apply(dedupe, stateful=True).filter(lambda v: v is not None)
    sdf = sdf.group_by(lambda v: v["post_id"], name="post")
    sdf = sdf.apply(count, stateful=True)
    sdf.sink(RedisCountCasSink(s.redis_url))
    return app


def main() -> None:
    """Run the job until SIGTERM."""
    p = argparse.ArgumentParser()
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--commit-interval", type=float, required=True, help="seconds")
    a = p.parse_args()
    app = build_app(FlowSettings(), a.group, a.state_dir, a.commit_interval)
    emit("ready", t=time.time())
    app.run()


if __name__ == "__main__":
    main()
