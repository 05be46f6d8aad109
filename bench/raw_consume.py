"""The machine's limit for the flows: read a topic and decode + validate every value.

One confluent-kafka consumer with the flows' consumer settings
(``flows.kafka_input.consumer_config``) assigned to the given partitions from the
beginning, ``consume`` in batches of 1000, each value through
``LikeEvent.model_validate_json`` (the validation ``flows.decode`` does), until every
partition's end. ``python -m bench.raw_consume [--partitions 0,1,...]``; the topic is
``FlowSettings().events_topic`` (from the ``LIKES_*`` variables); prints ``BENCH {...}``.
"""

from __future__ import annotations

import argparse
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from bench.children import emit
from core.settings import FlowSettings
from flows.kafka_input import consumer_config
from schemas.events import LikeEvent


def _consumer(s: FlowSettings) -> Consumer:
    return Consumer(
        {
            **consumer_config(s),
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": "bench-raw-ignored",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )


def _drain(c: Consumer, parts: list[int]) -> tuple[int, int]:
    """``(valid, invalid)`` messages until every partition's end."""
    left = set(parts)
    n = bad = 0
    validate = LikeEvent.model_validate_json
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
    return n, bad


def main() -> None:
    """Consume and validate the assigned partitions to their end."""
    p = argparse.ArgumentParser()
    p.add_argument("--partitions", default="all", help="comma-separated, or all")
    a = p.parse_args()
    s = FlowSettings()
    topic = s.events_topic
    c = _consumer(s)
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = (
        sorted(md.partitions)
        if a.partitions == "all"
        else [int(x) for x in a.partitions.split(",")]
    )
    ready = time.time()
    emit("ready", t=ready)
    c.assign([TopicPartition(topic, pt, OFFSET_BEGINNING) for pt in parts])
    n, bad = _drain(c, parts)
    end = time.time()
    c.close()
    emit("end", t=end, ready=ready, messages=n, invalid=bad)


if __name__ == "__main__":
    main()
