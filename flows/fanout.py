"""The fanout flow: ``likes.events`` to notifications and the trending ranking signal.

Guarantees under replay and crash (Bytewax recovery, at-least-once input): a like
notifies a post's author at most once per actor (the actor ledger's primary key makes a
replay a no-op, in the same transaction as the aggregate), and trending scores are
absolute values that a replay rewrites identically. Step ids are permanent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from core.records import Accepted, DeadLetter, TrendOut
from core.settings import FlowSettings
from flows.fanout_stages import DedupeStage, TrendStage
from flows.kafka_input import EventSource, kafka_events
from flows.progress import OffsetProgress


@dataclass
class FanoutSinks:
    """Where each output of the fanout flow goes (tests pass ``TestingSink``s)."""

    dead_letters: Sink[DeadLetter]
    notifications: Sink[Accepted]
    trending: Sink[TrendOut]


def notifies(a: Accepted) -> bool:
    """A new like by someone other than the post's author."""
    return a.delta > 0 and a.author_id is not None and a.author_id != a.user_id


def combine_likes(shards: int, batch: list[Accepted]) -> Iterable[tuple[str, dict[int, list[int]]]]:
    """Like times per post, grouped per trending shard."""
    per_shard: dict[int, dict[int, list[int]]] = {}
    for a in batch:
        if a.delta > 0:
            per_shard.setdefault(a.post_id % shards, {}).setdefault(a.post_id, []).append(
                a.occurred_ms
            )
    return [(str(s), p) for s, p in per_shard.items()]


def build_flow(
    s: FlowSettings,
    sinks: FanoutSinks,
    source: EventSource | None = None,
    flow_id: str = "likes_fanout",
    progress: OffsetProgress | None = None,
) -> Dataflow:
    """The fanout dataflow; ``source`` replaces Kafka in tests and benchmarks, and
    ``progress`` (if given) receives the offsets read, for ``likes status``."""
    flow = Dataflow(flow_id)
    kin = kafka_events("read_events", flow, s, source, progress)
    op.output("write_dlq", kin.dead, sinks.dead_letters)
    ttl_ms = s.dedupe_ttl_s * 1000

    def dedupe_builder(resume: Any) -> DedupeStage:
        return DedupeStage(ttl_ms, resume)

    accepted = op.flat_map(
        "unkey_accepted", op.stateful_batch("dedupe", kin.events, dedupe_builder), lambda kv: kv[1]
    )
    op.output(
        "write_notifications",
        op.filter("select_notifications", accepted, notifies),
        sinks.notifications,
    )

    def trend_builder(resume: Any) -> TrendStage:
        return TrendStage(s.trending_half_life_s, resume)

    partials = op.flat_map_batch(
        "combine_likes", accepted, lambda b: combine_likes(s.count_shards, b)
    )
    scores = op.stateful_batch("trend_posts", partials, trend_builder)
    op.output("write_trending", op.map("unkey_trending", scores, lambda kv: kv[1]), sinks.trending)
    return flow
