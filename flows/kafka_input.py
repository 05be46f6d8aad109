"""The one Kafka input of every flow (and of the benchmarks): consumer settings, error
triage, offsets for lag, and decoding, as the ``kafka_events`` operator.

Guarantees:
- Kafka offsets live only in Bytewax recovery, under the step id
  ``<flow>.<step_id>.kafka_input`` (the id ``kop.input(step_id, ...)`` gave them before
  this operator existed, so a running flow resumes where it was). Flows call it with
  ``step_id="read_events"``; renaming that loses every stored offset.
- Nothing is dropped silently: every message becomes an event or a :class:`DeadLetter`;
  a consumer error that carries a message is dead-lettered, a transient one (no payload)
  is logged, a fatal one raises so the flow resumes from recovery
  (:func:`flows.decode.triage_error`).
- Events come out grouped per Kafka partition and keyed by it (one item per partition
  per batch), so a partition's events reach one stateful owner, in offset order.
- Messages cross to the partition's owner undecoded (:class:`~flows.decode.RawPartition`,
  lists of bytes) and are decoded there, in a ``decode`` step keyed like the stages
  after it (so no decoded event is pickled between processes); that step keeps no state
  (nothing in its snapshots), and offsets for ``likes status`` are recorded by a separate
  ``track_offsets`` step into the :class:`~flows.progress.OffsetProgress` passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source, StatefulSourcePartition
from bytewax.operators import KeyedStream, StatefulBatchLogic
from confluent_kafka import OFFSET_BEGINNING

from core import watchdog
from core.records import DeadLetter
from core.settings import FlowSettings
from flows.decode import (
    ConsumerError,
    Message,
    PartitionEvents,
    RawPartition,
    decode_raw,
    group_raw,
    triage_error,
)
from flows.progress import OffsetProgress
from flows.streams import split_by_type

RawItem = Message | ConsumerError
"""What a Kafka source emits: a message, or a consumer error (with ``raise_on_errors=False``)."""
EventSource = Source[Message] | Source[RawItem]
"""A replacement input: a test's ``TestingSource`` of messages, or a ``KafkaSource``."""


def consumer_config(settings: FlowSettings) -> dict[str, str]:
    """librdkafka settings of every consumer of ``likes.events`` (``add_config``).

    ``auto.offset.reset=error``: an offset that retention already dropped fails loudly
    instead of skipping data; ``fetch.wait.max.ms=500``: how long the broker holds an
    idle partition's fetch (a fetch returns once ``fetch.min.bytes``, one byte, has
    arrived). Bytewax runs one consumer per partition, so a shorter wait is paid in idle
    fetches: 100 ms kept the single-profile broker 0.12 cores busy with no traffic,
    500 ms 0.04-0.05. Freshness p50 was unchanged in the runs after it; Kafka-to-Redis
    p99 was 43-60 ms against 31-45 before, within this machine's noise, not settled.
    None depends on ``settings`` yet; callers pass them so that one that does needs no
    caller change.
    """
    return {"auto.offset.reset": "error", "fetch.wait.max.ms": "500"}


class _FlowKafkaSource(KafkaSource):
    """A :class:`KafkaSource` whose partitions without recovery state start at given
    offsets (``FlowSettings.start_offsets``) instead of the beginning, and whose every
    poll is a beat of the process's watchdog (:mod:`core.watchdog`): the main loop polls
    its input between batches, also when there is nothing to read."""

    def __init__(self, starts: dict[int, int], *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._starts = starts

    def build_part(  # type: ignore[override]  # Bytewax declares its private partition class
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _BeatingPartition:
        if resume_state is None:
            resume_state = self._starts.get(int(for_part.split("-", 1)[0]))
        return _BeatingPartition(super().build_part(step_id, for_part, resume_state))


class _BeatingPartition(StatefulSourcePartition[RawItem, int | None]):
    def __init__(self, inner: StatefulSourcePartition[RawItem, int | None]) -> None:
        self._inner = inner

    def next_batch(self) -> Iterable[RawItem]:
        watchdog.beat()
        return self._inner.next_batch()

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> int | None:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


def kafka_source(
    settings: FlowSettings, *, tail: bool = True, topic: str | None = None
) -> KafkaSource:
    """The events topic (or ``topic``) from its beginning, or from the offsets in
    ``settings.start_offsets`` (recovery overrides either), with :func:`consumer_config`;
    errors are emitted as items for triage, not raised; every poll beats the watchdog.
    ``tail=False`` stops at the end of every partition (benchmarks)."""
    name = topic or settings.events_topic
    kw: dict[str, Any] = {
        "tail": tail,
        "starting_offset": OFFSET_BEGINNING,
        "add_config": consumer_config(settings),
        "batch_size": settings.batch_size,
        "raise_on_errors": False,
    }
    starts = settings.start_offsets.get(name, {})
    return _FlowKafkaSource(starts, [settings.kafka_bootstrap], [name], **kw)


@dataclass(frozen=True)
class KafkaEvents:
    """The outputs of :func:`kafka_events`."""

    events: KeyedStream[PartitionEvents]
    """Valid events, one item per Kafka partition per batch, keyed by ``str(partition)``."""
    dead: Stream[DeadLetter]
    """Messages that did not decode, and consumer errors that carry a message."""


@operator
def kafka_events(
    step_id: str,
    flow: Dataflow,
    settings: FlowSettings,
    source: EventSource | None = None,
    progress: OffsetProgress | None = None,
) -> KafkaEvents:
    """Read ``settings.events_topic`` (or ``source``), triage errors, decode and group.

    With ``progress``, a ``track_offsets`` step records each partition's next offset.
    """
    # A source of messages emits raw items too (``Source`` is merely declared invariant).
    src = cast(Source[RawItem], source) if source is not None else kafka_source(settings)
    raw = op.input("kafka_input", flow, src)
    if progress is not None:
        raw = op.inspect("track_offsets", raw, progress.record)
    messages: Stream[Message]
    errors: Stream[ConsumerError]
    messages, errors = split_by_type("split_errors", raw, KafkaSourceMessage, KafkaError)
    consumer_dead = op.flat_map("triage_errors", errors, triage_error)
    grouped = op.flat_map_batch("group", messages, group_raw)
    keyed = op.key_on("key_partition", grouped, lambda g: str(g.partition))
    decoded = op.stateful_batch("decode", keyed, lambda _resume: _Decode())
    split = op.branch("split_dead", decoded, lambda kv: isinstance(kv[1], PartitionEvents))
    events, decode_dead = split.trues, split.falses
    return KafkaEvents(
        events=cast(KeyedStream[PartitionEvents], events),
        dead=op.merge(
            "all_dead",
            op.map("unkey_dead", decode_dead, lambda kv: cast(DeadLetter, kv[1])),
            consumer_dead,
        ),
    )


Decoded = DeadLetter | PartitionEvents


class _Decode(StatefulBatchLogic[RawPartition, Decoded, None]):
    """Decodes a partition's raw groups where its stages run; keeps nothing."""

    def on_batch(self, values: list[RawPartition]) -> tuple[list[Decoded], bool]:
        out: list[Decoded] = []
        for raw in values:
            out.extend(decode_raw(raw))
        return out, StatefulBatchLogic.DISCARD

    def snapshot(self) -> None:
        return None
