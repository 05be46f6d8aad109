"""The counts flow as the benchmark children run it: production code throughout.

``flows.counts.build_flow`` over ``flows.kafka_input.kafka_source(settings, tail=False,
batches=True)``
(the flows' own consumer settings, ending at the end of every partition), with the
production sinks (``flows.production_sinks.counts_sinks``) or, for the Quix Streams
comparison, the Redis count sink alone. Settings come from ``FlowSettings()``, i.e. the
``LIKES_*`` variables the parent derived from its settings object.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from clickhouse_connect.driver import options

from core.records import Accepted, DeadLetter, WindowPart
from core.settings import FlowSettings
from flows.counts import CountsSinks, build_flow
from flows.kafka_input import EventSource, kafka_source
from flows.production_sinks import counts_sinks
from flows.progress import OffsetProgress
from sinks import clickhouse_store
from sinks.redis_counts import RedisCountSink

T = TypeVar("T")
Mode = Literal["full", "redis"]
MODES: tuple[Mode, ...] = ("full", "redis")


class _Discard(StatelessSinkPartition[T]):
    def write_batch(self, items: list[T]) -> None:
        return None


class DiscardSink(DynamicSink[T]):
    """Drops everything (outputs that the compared job does not have)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard[T]:
        return _Discard()


def full_sinks(s: FlowSettings) -> CountsSinks:
    """Every production sink, with their start-up costs paid before timing starts."""
    sinks = counts_sinks(s)
    clickhouse_store.ensure_schema(s.effective_clickhouse_url)
    # clickhouse-connect imports pandas lazily on the first insert (~3 s here): a
    # start-up cost of every flow process, kept out of the throughput figure.
    options.check_pandas()  # type: ignore[no-untyped-call]  # clickhouse-connect: untyped
    return sinks


def redis_only_sinks(s: FlowSettings) -> CountsSinks:
    """The Redis count sink alone: the same job as the Quix Streams comparison."""
    return CountsSinks(
        dead_letters=DiscardSink[DeadLetter](),
        like_events=DiscardSink[Accepted](),
        windows=DiscardSink[WindowPart](),
        counts=[RedisCountSink(s.redis_url)],
        hot=[],
    )


def bench_flow(s: FlowSettings, mode: Mode, source: EventSource | None = None) -> Dataflow:
    """The counts flow over ``source``, by default the events topic up to its end.

    Offsets are tracked as in production (an ``OffsetProgress`` that nobody publishes).
    """
    sinks = full_sinks(s) if mode == "full" else redis_only_sinks(s)
    src = source if source is not None else kafka_source(s, tail=False, batches=True)
    return build_flow(s, sinks, source=src, progress=OffsetProgress())
