"""The counts flow: ``likes.events`` to every count, window and hot-post projection.

Guarantees, given Bytewax recovery (state and Kafka offsets snapshotted together) and
at-least-once input: each edge transition is applied once to per-post counts (dedupe by
edge version), and every sink write is absolute and versioned, so the batches replayed
after a crash or a redelivery leave every projection as if each event came once.
Step ids are permanent: recovery state is keyed by them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink
from confluent_kafka import OFFSET_BEGINNING

from flows.config import FlowSettings
from flows.count_stage import CountStage, Partial
from flows.decode import Message, decode_message, triage_error
from flows.hot import HotDetector
from flows.partition_stage import PartitionStage
from flows.progress import track
from flows.records import Accepted, CountUpdate, DeadLetter, HotChange, WindowPart
from schemas.events import LikeEvent


@dataclass
class CountsSinks:
    """Where each output of the counts flow goes (tests pass ``TestingSink``s)."""

    dead_letters: Sink[DeadLetter]
    like_events: Sink[Accepted]
    windows: Sink[WindowPart]
    counts: list[Sink[CountUpdate]]
    hot: list[Sink[HotChange]]


def group_by_partition(
    batch: list[tuple[int, LikeEvent]],
) -> Iterable[tuple[str, tuple[int, list[LikeEvent]]]]:
    """One item per Kafka partition per batch, so the exchange moves lists, not events."""
    groups: dict[int, list[LikeEvent]] = {}
    for partition, ev in batch:
        groups.setdefault(partition, []).append(ev)
    return [(str(p), (p, evs)) for p, evs in groups.items()]


def combine_counts(
    shards: int, bucket_ms: int, batch: list[Accepted]
) -> Iterable[tuple[str, Partial]]:
    """Per-batch partial sums per post, grouped per count shard (the combiner)."""
    per_shard: dict[int, Partial] = {}
    for a in batch:
        partial = per_shard.setdefault(a.post_id % shards, {})
        delta, inc, ts, buckets = partial.get(a.post_id, (0, 0, 0, {}))
        if a.delta > 0:
            b = a.occurred_ms - a.occurred_ms % bucket_ms
            buckets[b] = buckets.get(b, 0) + 1
        partial[a.post_id] = (delta + a.delta, inc + a.seq_inc, max(ts, a.occurred_ms), buckets)
    return [(str(s), p) for s, p in per_shard.items()]


def read_events(
    flow: Dataflow, s: FlowSettings, source: Source[Message] | None
) -> tuple[Stream[Message], Stream[DeadLetter] | None]:
    """A flow's input: ``likes.events`` (consumer errors triaged) or a test source."""
    if source is not None:
        return op.input("read_events", flow, source), None
    kin = kop.input(
        "read_events",
        flow,
        brokers=[s.kafka_bootstrap],
        topics=[s.events_topic],
        starting_offset=OFFSET_BEGINNING,
        batch_size=s.batch_size,
        add_config={"auto.offset.reset": "error", "fetch.wait.max.ms": "100"},
    )
    return kin.oks, op.flat_map("triage_errors", kin.errs, triage_error)


def _partition_stage(s: FlowSettings) -> Any:
    def build(resume: Any) -> PartitionStage:
        return PartitionStage(
            ttl_ms=s.dedupe_ttl_s * 1000,
            window_ms=s.window_s * 1000,
            lateness_ms=s.lateness_s * 1000,
            emit_ms=int(s.window_emit_s * 1000),
            snapshot=resume,
        )

    return build


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
    source: Source[Message] | None = None,
    flow_id: str = "likes_counts",
) -> Dataflow:
    """The counts dataflow; ``source`` replaces Kafka in tests."""
    flow = Dataflow(flow_id)
    messages, consumer_dead = read_events(flow, s, source)
    decoded = op.map("decode", op.map("track_progress", messages, track), decode_message)
    split = op.branch("split_dead", decoded, lambda d: isinstance(d, DeadLetter))
    dead: Stream[DeadLetter] = split.trues  # type: ignore[assignment]
    if consumer_dead is not None:
        dead = op.merge("all_dead", dead, consumer_dead)
    op.output("write_dlq", dead, sinks.dead_letters)
    good: Stream[tuple[int, LikeEvent]] = split.falses  # type: ignore[assignment]
    grouped = op.flat_map_batch("group_by_partition", good, group_by_partition)
    staged = op.stateful_batch("dedupe_window", grouped, _partition_stage(s))
    kinds = op.branch(
        "split_stage", op.map("unkey_stage", staged, lambda kv: kv[1]), lambda t: t[0] == "acc"
    )
    accepted = op.map("unwrap_accepted", kinds.trues, lambda t: t[1])
    op.output("write_like_events", accepted, sinks.like_events)
    op.output(
        "write_windows", op.map("unwrap_windows", kinds.falses, lambda t: t[1]), sinks.windows
    )
    partials = op.flat_map_batch(
        "combine_counts",
        accepted,
        lambda b: combine_counts(s.count_shards, s.hot_bucket_s * 1000, b),
    )
    counted = op.map(
        "unkey_counts",
        op.stateful_batch("count_posts", partials, _count_stage(s)),
        lambda kv: kv[1],
    )
    outs = op.branch("split_counts", counted, lambda t: t[0] == "count")
    counts = op.map("unwrap_counts", outs.trues, lambda t: t[1])
    hot = op.map("unwrap_hot", outs.falses, lambda t: t[1])
    for i, count_sink in enumerate(sinks.counts):
        op.output(f"write_counts_{i}", counts, count_sink)
    for i, hot_sink in enumerate(sinks.hot):
        op.output(f"write_hot_{i}", hot, hot_sink)
    return flow
