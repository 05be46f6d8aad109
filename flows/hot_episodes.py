"""Hot-episode changes from the counts flow to the analytics flow, through Kafka.

The counts flow detects hot posts (its count stage sees every like first) but writes
nothing to ClickHouse, so every :class:`HotChange` it makes (``hot``, ``update``,
``cooled``) also goes to the internal topic ``hot_episodes_topic`` (keyed by post), and
the analytics flow writes them into ``hot_post_episodes``. ``likes.hot_posts`` (the
contract's topic) stays as it is: only ``hot`` and ``cooled``.

Guarantees: at-least-once on both legs (an acknowledged produce per batch; offsets in
the analytics flow's recovery), and the table keeps the highest version of each
``(post_id, became_hot_at)``: duplicates, replays and any order leave the exact rows
Redis ``likes:hot`` was written from. A message that does not decode is dead-lettered
with its bytes, never dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from pydantic import ValidationError

from core.records import DeadLetter, HotChange
from core.settings import FlowSettings
from flows.decode import ConsumerError, Message, triage_error
from flows.kafka_input import RawItem, kafka_source
from flows.streams import split_by_type
from schemas.events import HotEpisodeChange
from sinks.kafka_topic import KafkaRecord


def episode_record(h: HotChange) -> KafkaRecord:
    """The ``hot_episodes_topic`` record of any hot change (``event_id`` header: the
    episode and its version, so copies are recognisable)."""
    change = HotEpisodeChange.model_validate(asdict(h))
    eid = f"hot-episode:{h.post_id}:{h.became_hot_at_ms}:{h.version}"
    return KafkaRecord(
        key=str(h.post_id).encode(),
        value=change.model_dump_json().encode(),
        headers=[("event_id", eid.encode())],
    )


def decode_episode(msg: Message) -> HotChange | DeadLetter:
    """The change a record carries, or a dead letter saying why not."""
    try:
        c = HotEpisodeChange.model_validate_json(msg.value or b"")
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "value"
        reason = f"invalid hot episode change: {where}: {first.get('msg', '')}"[:500]
        offset = msg.offset if msg.offset is not None else -1
        return DeadLetter(msg.key, msg.value, msg.topic or "", msg.partition or 0, offset, reason)
    return HotChange(
        c.post_id, c.state, c.rate, c.peak_rate, c.became_hot_at_ms, c.at_ms, c.cooled_at_ms
    )


@dataclass(frozen=True)
class HotEpisodes:
    """The outputs of :func:`kafka_hot_episodes`."""

    changes: Stream[HotChange]
    dead: Stream[DeadLetter]


@operator
def kafka_hot_episodes(
    step_id: str, flow: Dataflow, settings: FlowSettings, source: Source[RawItem] | None = None
) -> HotEpisodes:
    """Read ``settings.hot_episodes_topic`` (or ``source``): changes and dead letters.

    Its offsets live in recovery under ``<flow>.<step_id>.kafka_input``.
    """
    topic = settings.hot_episodes_topic
    src = source if source is not None else kafka_source(settings, topic=topic)
    raw = op.input("kafka_input", flow, src)
    messages: Stream[Message]
    errors: Stream[ConsumerError]
    messages, errors = split_by_type("split_errors", raw, KafkaSourceMessage, KafkaError)
    consumer_dead = op.flat_map("triage_errors", errors, triage_error)
    decoded = op.map("decode", messages, decode_episode)
    decode_dead, changes = split_by_type("split_dead", decoded, DeadLetter, HotChange)
    return HotEpisodes(changes=changes, dead=op.merge("all_dead", decode_dead, consumer_dead))
