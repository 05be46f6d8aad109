"""The counts job written with Quix Streams 3.x, for ``quix_comparison``.

The same work as the counts flow's count path, done the way Quix Streams documents it:
decode and validate each value with the same ``LikeEvent`` model, dedupe by edge
version in RocksDB state keyed by the message key (the edge, ``post:user``), re-key by
post with ``group_by`` (Quix's repartition topic), keep ``(count, seq)`` per post in
state, and write counts to Redis with the very same compare-and-set
(``sinks.redis_counts.write_counts``) from a ``BatchingSink`` flushed at each checkpoint.

Fairness: the checkpoint interval equals the counts flow's snapshot interval (2 s), the
consumer gets the same ``fetch.wait.max.ms``; state is backed by changelog topics (Quix's
default, its equivalent of Bytewax recovery snapshots); at-least-once, as ours.

``python -m bench.quix_job --topic T --group G --redis-url U --state-dir D``; prints
``BENCH {"event": "ready", ...}`` just before ``app.run()`` and ``{"event": "first"}`` when
the first message was processed (after topic creation and the consumer group join, which
are start-up); runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--commit-interval", type=float, default=2.0)
    a = p.parse_args()

    import redis
    from pydantic import ValidationError
    from quixstreams import Application, State
    from quixstreams.sinks import BatchingSink, SinkBatch

    from core.records import CountUpdate
    from core.settings import FlowSettings
    from schemas.events import LikeEvent
    from sinks.redis_counts import write_counts

    s = FlowSettings()

    class RedisCountCasSink(BatchingSink):
        def setup(self) -> None:
            self.client = redis.Redis.from_url(a.redis_url, socket_timeout=10)

        def write(self, batch: SinkBatch) -> None:
            updates = [
                CountUpdate(i.value["post_id"], i.value["count"], i.value["seq"]) for i in batch
            ]
            write_counts(self.client, updates)

    def decode(value: bytes) -> LikeEvent | None:
        try:
            return LikeEvent.model_validate_json(value)
        except ValidationError:
            return None  # ours dead-letters these; there are none in the benchmark topic

    def dedupe(ev: LikeEvent, state: State) -> dict[str, Any] | None:
        last = state.get("v")  # [version, liked] of the edge (state is keyed by the edge)
        liked = int(ev.liked)
        if last is None:
            delta, inc = (1 if liked else -1), 1
        else:
            if ev.edge_version <= last[0]:
                return None
            delta, inc = liked - last[1], ev.edge_version - last[0]
        state.set("v", [ev.edge_version, liked])
        return {"post_id": ev.post_id, "delta": delta, "inc": inc}

    def count(v: dict[str, Any], state: State) -> dict[str, Any]:
        c, q = state.get("c", [0, 0])
        c, q = c + v["delta"], q + v["inc"]
        state.set("c", [c, q])
        return {"post_id": v["post_id"], "count": c, "seq": q}

    first: list[float] = []

    def on_processed(topic: str, partition: int, offset: int) -> None:
        if not first:
            first.append(time.time())
            print("BENCH " + json.dumps({"event": "first", "t": first[0]}), flush=True)

    app = Application(
        broker_address=s.kafka_bootstrap,
        consumer_group=a.group,
        auto_offset_reset="earliest",
        commit_interval=a.commit_interval,
        state_dir=a.state_dir,
        consumer_extra_config={"fetch.wait.max.ms": "100"},
        loglevel="WARNING",
        on_message_processed=on_processed,
    )
    topic = app.topic(a.topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(decode).filter(lambda ev: ev is not None)
    sdf = sdf.apply(dedupe, stateful=True).filter(lambda v: v is not None)
    sdf = sdf.group_by(lambda v: v["post_id"], name="post")
    sdf = sdf.apply(count, stateful=True)
    sdf.sink(RedisCountCasSink())
    print("BENCH " + json.dumps({"event": "ready", "t": time.time()}), flush=True)
    app.run()


if __name__ == "__main__":
    main()
