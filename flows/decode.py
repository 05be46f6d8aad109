"""The edge of every flow: Kafka messages in, frozen events or dead letters out.

Nothing is dropped silently: a message that does not decode and validate becomes a
:class:`DeadLetter` with its original bytes, its coordinates and the reason; a consumer
error that carries a message does too; transient client errors (no payload, librdkafka
reconnects by itself) are logged; fatal ones raise so the flow resumes from recovery.

Decoding is pure: :func:`decode_batch` depends only on its argument and writes no state
(offsets for lag are recorded by a separate step, see :mod:`flows.progress`), so a
replayed batch decodes to the same items.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from confluent_kafka import KafkaError as ConfluentError
from pydantic import ValidationError

from core.records import DeadLetter, HotChange
from schemas.events import FLOW_STATE_ACTION, FlowStateRecord, HotPostEvent, LikeEvent, rfc3339
from sinks.kafka_topic import KafkaRecord

log = logging.getLogger(__name__)
Message = KafkaSourceMessage[bytes | None, bytes | None]
ConsumerError = KafkaError[bytes | None, bytes | None]

_TRANSIENT = {
    ConfluentError._TRANSPORT,
    ConfluentError._ALL_BROKERS_DOWN,
    ConfluentError._TIMED_OUT,
    ConfluentError._MSG_TIMED_OUT,
}
_FATAL = {
    ConfluentError._AUTO_OFFSET_RESET,
    ConfluentError.UNKNOWN_TOPIC_OR_PART,
    ConfluentError._UNKNOWN_PARTITION,
    ConfluentError._UNKNOWN_TOPIC,
}


class FatalConsumerError(RuntimeError):
    """The consumer cannot go on without losing data (e.g. its offset left retention)."""


def _dead(msg: Message, reason: str) -> DeadLetter:
    return DeadLetter(
        msg.key,
        msg.value,
        msg.topic or "",
        msg.partition or 0,
        msg.offset if msg.offset is not None else -1,
        reason,
    )


@dataclass(frozen=True, slots=True)
class FlowState:
    """A backfill's control record (:class:`~schemas.events.FlowStateRecord`) as the
    partition stage applies it: ``(post_id, liked edges, sum of versions)`` of the posts'
    edges in this partition, at this position; ``record_id`` makes a redelivery a no-op."""

    record_id: int
    posts: tuple[tuple[int, int, int], ...]


Decoded = tuple[int, LikeEvent | FlowState] | DeadLetter
_FLOW_STATE_MARK = f'"{FLOW_STATE_ACTION}"'.encode()


def _invalid(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(x) for x in first.get("loc", ())) or "value"
    return f"invalid event: {where}: {first.get('msg', '')}"[:500]


def _flow_state(value: bytes, partition: int) -> FlowState | str:
    try:
        rec = FlowStateRecord.model_validate_json(value)
    except ValidationError as e:
        return _invalid(e)
    if rec.partition != partition:  # the writer's partitioner disagrees with Connect's
        return f"flow-state record for partition {rec.partition} on {partition}"
    posts = tuple((int(p), int(n), int(s)) for p, n, s in rec.posts)
    return FlowState(rec.event_id.int, posts)


def _decode_value(value: bytes | None, partition: int) -> LikeEvent | FlowState | str:
    """The event (an edge event or a backfill's flow-state record) in a message of
    ``partition``, or why it is not one."""
    if value is None:
        return "empty message value"
    try:
        return LikeEvent.model_validate_json(value)
    except ValidationError as e:
        if _FLOW_STATE_MARK in value:
            return _flow_state(value, partition)
        return _invalid(e)


def decode_message(msg: Message) -> Decoded:
    """``(partition, event)``, or a dead letter saying why not."""
    partition = msg.partition or 0
    decoded = _decode_value(msg.value, partition)
    return _dead(msg, decoded) if isinstance(decoded, str) else (partition, decoded)


@dataclass(frozen=True, slots=True)
class PartitionEvents:
    """The valid events of one batch from one Kafka partition, in offset order, with any
    flow-state records in their places."""

    partition: int
    events: list[LikeEvent | FlowState]


def decode_batch(batch: list[Message]) -> list[DeadLetter | PartitionEvents]:
    """Decode a batch: dead letters one by one, then valid events grouped per Kafka
    partition (one item each)."""
    out: list[DeadLetter | PartitionEvents] = []
    for raw in group_raw(batch):
        out.extend(decode_raw(raw))
    return out


@dataclass(frozen=True, slots=True)
class RawPartition:
    """One batch's messages from one Kafka partition, undecoded, in offset order: what
    crosses between Bytewax processes to the partition's owner (bytes pickle cheaply;
    decoded events, pydantic models, do not)."""

    partition: int
    topic: str
    keys: list[bytes | None]
    values: list[bytes | None]
    offsets: list[int]


def group_raw(batch: list[Message]) -> list[RawPartition]:
    """Group a batch per Kafka partition without decoding, in offset order."""
    groups: dict[int, RawPartition] = {}
    for msg in batch:
        p = msg.partition or 0
        g = groups.get(p)
        if g is None:
            g = groups[p] = RawPartition(p, msg.topic or "", [], [], [])
        g.keys.append(msg.key)
        g.values.append(msg.value)
        g.offsets.append(msg.offset if msg.offset is not None else -1)
    return list(groups.values())


def decode_raw(raw: RawPartition) -> list[DeadLetter | PartitionEvents]:
    """Decode one partition's group: its dead letters, then its valid events as one
    :class:`PartitionEvents` (none if it has no valid event)."""
    out: list[DeadLetter | PartitionEvents] = []
    events: list[LikeEvent | FlowState] = []
    p, topic = raw.partition, raw.topic
    for key, value, offset in zip(raw.keys, raw.values, raw.offsets, strict=True):
        decoded = _decode_value(value, p)
        if isinstance(decoded, str):
            out.append(DeadLetter(key, value, topic, p, offset, decoded))
        else:
            events.append(decoded)
    if events:
        out.append(PartitionEvents(p, events))
    return out


def triage_error(err: ConsumerError) -> Iterable[DeadLetter]:
    """Route a consumer error: raise if fatal, dead-letter it if it has a message."""
    code = err.err.code()
    if err.err.fatal() or code in _FATAL:
        raise FatalConsumerError(f"fatal Kafka consumer error: {err.err}")
    if code in _TRANSIENT or err.msg.offset is None:
        log.warning("transient Kafka consumer error: %s", err.err)
        return []
    return [_dead(err.msg, f"consumer error: {err.err}")]


def dead_letter_record(d: DeadLetter) -> KafkaRecord:
    """The DLQ record: original key and bytes, the reason and coordinates in headers."""
    return KafkaRecord(
        key=d.key,
        value=d.value or b"",
        headers=[
            ("error", d.reason.encode()),
            ("src_topic", d.topic.encode()),
            ("src_partition", str(d.partition).encode()),
            ("src_offset", str(d.offset).encode()),
            ("event_id", f"dlq:{d.topic}:{d.partition}:{d.offset}".encode()),
        ],
    )


def hot_record(h: HotChange, window_s: int) -> KafkaRecord:
    """The ``likes.hot_posts`` record of a hot/cooled transition."""
    from datetime import UTC, datetime

    def ts(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    ev = HotPostEvent(
        post_id=h.post_id,
        state="hot" if h.state == "hot" else "cooled",
        rate=h.rate,
        window_seconds=window_s,
        became_hot_at=ts(h.became_hot_at_ms),
        at=ts(h.at_ms),
        peak_rate=h.peak_rate,
    )
    eid = f"hot:{h.post_id}:{rfc3339(ts(h.became_hot_at_ms))}:{h.state}"
    return KafkaRecord(
        key=str(h.post_id).encode(),
        value=json.dumps(ev.model_dump(mode="json")).encode(),
        headers=[("event_id", eid.encode())],
    )
