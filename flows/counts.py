"""The counts flow: ``likes.events`` to the like counts and hot posts, the critical path.

It writes Redis and Postgres counts, hot posts (Redis ``likes:hot``, ``likes.hot_posts``,
and every episode change to the internal ``likes.hot_episodes`` topic, from which the
analytics flow writes ClickHouse ``hot_posts``) and dead letters: no ClickHouse write,
so a slow or failing analytics store never delays a count (:mod:`flows.analytics` owns
those). Tests and benchmarks may still attach ``like_events`` and ``windows`` sinks:
then this flow also counts windows and writes both, as the analytics flow does.

Guarantees, given Bytewax recovery (state and Kafka offsets snapshotted together) and
at-least-once input: each edge transition is applied once to per-post counts (dedupe by
edge version), and every sink write is absolute and versioned, so the batches replayed
after a crash or a redelivery leave every projection as if each event came once. A
backfill's flow-state records set the flow's own per-post state to the edge store's
truth at their position (:mod:`flows.partition_stage`), and the counts that follow are
written over whatever ``seq`` a sink holds, so drift in the flow's state (a duplicate
after the dedupe TTL, a lost recovery store) does not outlive the next backfill.
Step ids are permanent: recovery state is keyed by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from core.records import (
    Accepted,
    CountUpdate,
    DeadLetter,
    HotChange,
    StageOutput,
    WindowPart,
)
from core.settings import FlowSettings
from flows.count_stage import CountStage, Partial
from flows.hot import HotDetector
from flows.kafka_input import EventSource, kafka_events
from flows.partition_stage import stage_builder
from flows.progress import OffsetProgress
from flows.streams import output, split_by_type
from sinks.owner import RoutedSink


@dataclass
class CountsSinks:
    """Where each output of the counts flow goes (tests pass ``TestingSink``s).

    ``like_events`` and ``windows`` are None in production (the analytics flow writes
    them); without a ``windows`` sink the flow computes no windows at all.
    """

    dead_letters: Sink[DeadLetter]
    like_events: Sink[Accepted] | None
    windows: Sink[WindowPart] | None
    counts: list[Sink[CountUpdate] | RoutedSink[CountUpdate]]
    hot: list[Sink[HotChange] | RoutedSink[HotChange]]


Change = tuple[int, int, int, int]
"""``(post_id, delta, seq_inc, occurred_ms)`` of one accepted transition; an adoption
has ``occurred_ms`` -1."""


def _changes(outs: list[StageOutput]) -> Iterator[Change]:
    for o in outs:
        yield from o.counted
        for a in o.accepted:
            yield a.post_id, a.delta, a.seq_inc, a.occurred_ms
        for d in o.adopted:
            yield d.post_id, d.delta, d.seq_inc, -1


def combine_counts(
    shards: int, bucket_ms: int, changes: Iterable[Change]
) -> list[tuple[str, Partial]]:
    """Per-batch partial sums per post, grouped per count shard (the combiner); a post
    with an adoption in the batch is marked forced."""
    per_shard: dict[int, Partial] = {}
    for post, delta, inc, ms in changes:
        partial = per_shard.get(post % shards)
        if partial is None:
            partial = per_shard[post % shards] = {}
        entry = partial.get(post)
        if entry is None:
            entry = partial[post] = [0, 0, 0, {}, False]
        entry[0] += delta
        entry[1] += inc
        if ms < 0:
            entry[4] = True
            continue
        if ms > entry[2]:
            entry[2] = ms
        if delta > 0:
            buckets = entry[3]
            b = ms - ms % bucket_ms
            buckets[b] = buckets.get(b, 0) + 1
    return [(str(s), p) for s, p in per_shard.items()]


def _count_stage(s: FlowSettings) -> Any:
    def build(resume: Any) -> CountStage:
        hot = HotDetector(
            window_ms=s.hot_window_s * 1000,
            bucket_ms=s.hot_bucket_s * 1000,
            threshold=s.hot_threshold,
            cool_threshold=max(1, int(s.hot_threshold * s.hot_cool_ratio)),
            snapshot=resume[2] if resume else None,
        )
        return CountStage(hot, check_ms=int(s.hot_check_s * 1000), snapshot=resume)

    return build


def build_flow(
    s: FlowSettings,
    sinks: CountsSinks,
    source: EventSource | None = None,
    flow_id: str = "likes_counts",
    progress: OffsetProgress | None = None,
) -> Dataflow:
    """The counts dataflow; ``source`` replaces Kafka in tests and benchmarks, and
    ``progress`` (if given) receives the offsets read, for ``likes status``."""
    flow = Dataflow(flow_id)
    kin = kafka_events("read_events", flow, s, source, progress)
    op.output("write_dlq", kin.dead, sinks.dead_letters)
    records = sinks.like_events is not None or sinks.windows is not None
    stage = stage_builder(
        s, flow="counts", windows=sinks.windows is not None, adopt=True, records=records
    )
    staged = op.stateful_batch("dedupe_window", kin.events, stage)
    outs = op.map("unkey_stage", staged, lambda kv: kv[1])
    if sinks.like_events is not None:
        accepted = op.flat_map("flatten_accepted", outs, lambda o: o.accepted)
        op.output("write_like_events", accepted, sinks.like_events)
    if sinks.windows is not None:
        windows = op.flat_map("flatten_windows", outs, lambda o: o.windows)
        op.output("write_windows", windows, sinks.windows)
    # combined straight from the stage's outputs: no item per event between the steps
    partials = op.flat_map_batch(
        "combine_counts",
        outs,
        lambda b: combine_counts(s.count_shards, s.hot_bucket_s * 1000, _changes(b)),
    )
    counted = op.map(
        "unkey_counts",
        op.stateful_batch("count_posts", partials, _count_stage(s)),
        lambda kv: kv[1],
    )
    counts, hot = split_by_type("split_counts", counted, CountUpdate, HotChange)
    for i, count_sink in enumerate(sinks.counts):
        output(f"write_counts_{i}", counts, count_sink)
    for i, hot_sink in enumerate(sinks.hot):
        output(f"write_hot_{i}", hot, hot_sink)
    return flow
