"""The analytics flow: ``likes.events`` and hot-episode changes to ClickHouse.

It writes ``like_events`` (one row per accepted transition), the per-partition parts of
``post_like_windows``, and ``hot_post_episodes`` (from the counts flow's changes,
:mod:`flows.hot_episodes`), plus dead letters. It is the counts flow's optional twin:
its own consumer of ``likes.events``, its own recovery store and its own dedupe per
Kafka partition (the same stage, :mod:`flows.partition_stage`, with windows on), so
ClickHouse being slow or down stalls only this flow, which catches up from Kafka
afterwards while counts stay fresh. With embedded chDB its process owns the store and
answers analysts (``flows.runner``).

Guarantees under replay and crash (Bytewax recovery, at-least-once input): each
transition is accepted once per edge version, window rows are absolute values with a
growing version and events are keyed by ``event_id`` (ReplacingMergeTree), so replayed
batches leave ClickHouse as if each event came once; the windows of a post sum to its
count in the edge store. Step ids are permanent: recovery state is keyed by them.
"""

from __future__ import annotations

from dataclasses import dataclass

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from core.records import Accepted, DeadLetter, HotChange, WindowPart
from core.settings import FlowSettings
from flows.hot_episodes import kafka_hot_episodes
from flows.kafka_input import EventSource, RawItem, kafka_events
from flows.partition_stage import stage_builder
from flows.progress import OffsetProgress
from flows.streams import output
from sinks.owner import OwnerOnlySink


@dataclass
class AnalyticsSinks:
    """Where each output of the analytics flow goes (tests pass ``TestingSink``s)."""

    dead_letters: Sink[DeadLetter]
    like_events: Sink[Accepted] | OwnerOnlySink[Accepted]
    windows: Sink[WindowPart] | OwnerOnlySink[WindowPart]
    hot_episodes: Sink[HotChange] | OwnerOnlySink[HotChange]


def build_flow(
    s: FlowSettings,
    sinks: AnalyticsSinks,
    source: EventSource | None = None,
    hot_source: Source[RawItem] | None = None,
    flow_id: str = "likes_analytics",
    progress: OffsetProgress | None = None,
) -> Dataflow:
    """The analytics dataflow; ``source`` and ``hot_source`` replace Kafka in tests, and
    ``progress`` (if given) receives the ``likes.events`` offsets read, for ``likes status``."""
    flow = Dataflow(flow_id)
    kin = kafka_events("read_events", flow, s, source, progress)
    staged = op.stateful_batch(
        "dedupe_window", kin.events, stage_builder(s, flow="analytics", windows=True)
    )
    outs = op.map("unkey_stage", staged, lambda kv: kv[1])
    accepted = op.flat_map("flatten_accepted", outs, lambda o: o.accepted)
    output("write_like_events", accepted, sinks.like_events)
    windows = op.flat_map("flatten_windows", outs, lambda o: o.windows)
    output("write_windows", windows, sinks.windows)
    hot = kafka_hot_episodes("read_hot_episodes", flow, s, hot_source)
    output("write_hot_episodes", hot.changes, sinks.hot_episodes)
    op.output("write_dlq", op.merge("all_dead", kin.dead, hot.dead), sinks.dead_letters)
    return flow
