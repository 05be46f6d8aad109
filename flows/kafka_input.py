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
  per batch, under :func:`flows.routing.partition_key`), so a partition's events reach
  one stateful owner, in offset order, and the partitions' owners are spread evenly
  over the workers.
- With ``FlowSettings.reader`` (a flow process running one worker), the process reads
  only the partitions whose stages Bytewax runs in it (:func:`flows.routing.reads_partition`),
  so no poll crosses processes before the stages; without it any worker may read any
  partition, and a poll may cross once, undecoded, to its partition's owner.
- Each poll of a Kafka partition becomes one item, a :class:`~flows.decode.RawPartition`
  (lists of keys, values and offsets), not one item per message: the steps before the
  decode pay Bytewax's per-item cost once per poll. A replacement source of single
  messages (tests) is grouped into the same items.
- Messages cross to the partition's owner undecoded (:class:`~flows.decode.RawPartition`,
  lists of bytes) and are decoded there, in a ``decode`` step keyed like the stages
  after it (so no decoded event is pickled between processes); that step keeps no state
  (nothing in its snapshots), and offsets for ``likes status`` are recorded by a separate
  ``track_offsets`` step into the :class:`~flows.progress.OffsetProgress` passed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import bytewax.operators as op
from bytewax.connectors.kafka import (
    BYTEWAX_CONSUMER_LAG_GAUGE,
    KafkaError,
    KafkaSource,
    KafkaSourceMessage,
)
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source, StatefulSourcePartition
from bytewax.operators import KeyedStream, StatefulBatchLogic
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka import KafkaError as LibError
from confluent_kafka import Message as LibMessage

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
from flows.routing import partition_key, reads_partition
from flows.streams import split_by_type

RawItem = Message | ConsumerError
"""What a Kafka source emits: a message, or a consumer error (with ``raise_on_errors=False``)."""
BatchItem = RawPartition | ConsumerError
"""What a batch source (:func:`kafka_source` with ``batches=True``) emits: one poll's
messages of one partition, or a consumer error."""
SourceItem = RawPartition | Message | ConsumerError
EventSource = Source[Message] | Source[RawItem] | Source[BatchItem]
"""A replacement input: a test's ``TestingSource`` of messages, or a Kafka source."""


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
    its input between batches, also when there is nothing to read. With ``batches``
    each poll of a partition is one :class:`RawPartition` (:class:`_BatchPartition`)."""

    def __init__(
        self,
        starts: dict[int, int],
        reader: tuple[int, int] | None,
        brokers: list[str],
        topics: list[str],
        **kw: Any,
    ) -> None:
        self._batches = kw.pop("batches", False)
        super().__init__(brokers, topics, **kw)
        self._starts, self._reader = starts, reader
        self._kw, self._bootstrap = kw, ",".join(brokers)

    def list_parts(self) -> list[str]:
        """The partitions this worker may read: all of them, or with a ``reader`` those
        whose stages run in this process (each then has exactly one reader)."""
        parts: list[str] = super().list_parts()
        return [p for p in parts if reads_partition(int(p.split("-", 1)[0]), self._reader)]

    def build_part(  # type: ignore[override]  # Bytewax declares its private partition class
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _BeatingPartition | _BatchPartition:
        if resume_state is None:
            resume_state = self._starts.get(int(for_part.split("-", 1)[0]))
        if not self._batches:
            return _BeatingPartition(super().build_part(step_id, for_part, resume_state))
        index, topic = for_part.split("-", 1)
        config = {
            # as KafkaSource's own partitions: offsets live in Bytewax recovery only
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": self._bootstrap,
            "enable.partition.eof": str(not self._kw["tail"]),
            "statistics.interval.ms": "1000",
            **self._kw["add_config"],
        }
        start = self._kw["starting_offset"] if resume_state is None else resume_state
        return _BatchPartition(step_id, config, topic, int(index), start, self._kw["batch_size"])


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


def _source_message(msg: LibMessage) -> Message:
    return KafkaSourceMessage(
        key=msg.key(),
        value=msg.value(),
        topic=msg.topic(),
        headers=msg.headers() or [],
        latency=msg.latency(),
        offset=msg.offset(),
        partition=msg.partition(),
        timestamp=msg.timestamp(),
    )


class _BatchPartition(StatefulSourcePartition[BatchItem, int]):
    """One Kafka partition, each poll emitted as one :class:`RawPartition` (consumer
    errors that carry a message as :data:`ConsumerError` items beside it). Its snapshot
    is the next offset to read, as a ``KafkaSource`` partition's, so either resumes from
    the other's recovery state; it reports ``bytewax_kafka_consumer_lag`` as they do."""

    def __init__(
        self,
        step_id: str,
        config: dict[str, str],
        topic: str,
        part: int,
        offset: int,
        batch_size: int,
    ) -> None:
        self._topic, self._part, self._offset, self._batch_size = topic, part, offset, batch_size
        self._lag = BYTEWAX_CONSUMER_LAG_GAUGE.labels(step_id=step_id, topic=topic, partition=part)
        self._consumer = Consumer({**config, "stats_cb": self._stats})
        self._consumer.assign([TopicPartition(topic, part, offset)])
        self._eof = False

    def _stats(self, stats_json: str) -> None:
        topic = json.loads(stats_json).get("topics", {}).get(self._topic, {})
        stats = topic.get("partitions", {}).get(str(self._part))
        if stats is not None and self._offset >= 0:  # not a logical offset (the beginning)
            self._lag.set(stats["ls_offset"] - self._offset)

    def next_batch(self) -> list[BatchItem]:
        watchdog.beat()
        if self._eof:
            raise StopIteration()
        raw = RawPartition(self._part, self._topic, [], [], [])
        out: list[BatchItem] = []
        for msg in self._consumer.consume(self._batch_size, 0.001):
            err = msg.error()
            if err is not None and err.code() == LibError._PARTITION_EOF:
                self._eof = True  # the end (benchmarks): stop at the next poll
                break
            offset = msg.offset()
            if err is None:
                raw.keys.append(msg.key())
                raw.values.append(msg.value())
                raw.offsets.append(offset if offset is not None else -1)
            else:
                out.append(KafkaError(err, _source_message(msg)))
            if offset is not None and offset >= 0:
                self._offset = offset + 1
        if raw.offsets:
            out.insert(0, raw)
        return out

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


def kafka_source(
    settings: FlowSettings,
    *,
    tail: bool = True,
    topic: str | None = None,
    batches: bool = False,
) -> KafkaSource:
    """The events topic (or ``topic``) from its beginning, or from the offsets in
    ``settings.start_offsets`` (recovery overrides either), with :func:`consumer_config`;
    errors are emitted as items for triage, not raised; every poll beats the watchdog.
    ``tail=False`` stops at the end of every partition (benchmarks). ``batches``: each
    poll of a partition is one :class:`RawPartition` instead of one item per message
    (what :func:`kafka_events` reads)."""
    name = topic or settings.events_topic
    kw: dict[str, Any] = {
        "tail": tail,
        "starting_offset": OFFSET_BEGINNING,
        "add_config": consumer_config(settings),
        "batch_size": settings.batch_size,
        "raise_on_errors": False,
        "batches": batches,
    }
    starts = settings.start_offsets.get(name, {})
    return _FlowKafkaSource(starts, settings.reader, [settings.kafka_bootstrap], [name], **kw)


@dataclass(frozen=True)
class KafkaEvents:
    """The outputs of :func:`kafka_events`."""

    events: KeyedStream[PartitionEvents]
    """Valid events, one item per Kafka partition per batch, keyed by its
    :func:`~flows.routing.partition_key`."""
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
    # Any source emits these items (``Source`` is merely declared invariant).
    src = cast(Source[SourceItem], source or kafka_source(settings, batches=True))
    raw = op.input("kafka_input", flow, src)
    if progress is not None:
        raw = op.inspect("track_offsets", raw, progress.record)
    by_poll = op.branch("split_polls", raw, lambda item: isinstance(item, RawPartition))
    polls = cast(Stream[RawPartition], by_poll.trues)
    items = cast(Stream[RawItem], by_poll.falses)
    messages: Stream[Message]
    errors: Stream[ConsumerError]
    messages, errors = split_by_type("split_errors", items, KafkaSourceMessage, KafkaError)
    consumer_dead = op.flat_map("triage_errors", errors, triage_error)
    grouped = op.merge("grouped", polls, op.flat_map_batch("group", messages, group_raw))
    keyed = op.key_on("key_partition", grouped, lambda g: partition_key(g.partition))
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
