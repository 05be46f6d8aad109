"""The machine's limit for the flows: read a topic and decode + validate every value.

One confluent-kafka consumer assigned to the given partitions from the beginning,
``consume`` in batches of 1000, each value through ``LikeEvent.model_validate_json``
(what ``flows.decode.decode_message`` does), until every partition's end.
``python -m bench.raw_consume --topic T [--partitions 0,1,...]``; prints ``BENCH {...}``.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", default="all")
    a = p.parse_args()

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    from pydantic import ValidationError

    from core.settings import CommonSettings
    from schemas.events import LikeEvent

    c = Consumer(
        {
            "bootstrap.servers": CommonSettings().kafka_bootstrap,
            "group.id": "bench-raw-ignored",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
    md = c.list_topics(a.topic, timeout=10).topics[a.topic]
    parts = (
        sorted(md.partitions)
        if a.partitions == "all"
        else [int(x) for x in a.partitions.split(",")]
    )
    validate = LikeEvent.model_validate_json
    ready = time.time()
    print("BENCH " + json.dumps({"event": "ready", "t": ready}), flush=True)
    c.assign([TopicPartition(a.topic, pt, OFFSET_BEGINNING) for pt in parts])
    left = set(parts)
    n = bad = 0
    while left:
        for m in c.consume(1000, 1.0):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    left.discard(m.partition())
                    continue
                raise RuntimeError(str(err))
            try:
                validate(m.value())
                n += 1
            except ValidationError:
                bad += 1
    end = time.time()
    c.close()
    print(
        "BENCH "
        + json.dumps({"event": "end", "t": end, "ready": ready, "messages": n, "invalid": bad}),
        flush=True,
    )


if __name__ == "__main__":
    main()
