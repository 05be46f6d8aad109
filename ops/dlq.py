"""``likes dlq``: what the flows dead-lettered, and re-injecting it once the cause is fixed.

The flows write a dead letter (:func:`flows.decode.dead_letter_record`) with the original
key and value bytes and headers ``error``, ``src_topic``, ``src_partition``,
``src_offset`` and ``event_id`` = ``dlq:<topic>:<partition>:<offset>``.

Listing reads ``likes.events.dlq`` from the start of every partition to the end it had
when the listing began (``assign()``, no consumer group, nothing committed, a deadline).
Every flow reading ``likes.events`` dead-letters a bad message on its own (``counts`` and
``fanout`` both do), and a flow resuming from a snapshot writes its dead letters again,
so one source message may have several identical DLQ records: they are shown as one
entry, whose id (``<dlq_partition>:<dlq_offset>``) is that of its earliest copy; the ids
of all copies are accepted by ``replay``.

Replay guarantees:

- The original key and value bytes go back to the partition of ``likes.events`` they
  were read from (the ``src_partition`` header): each flow dedupes per Kafka partition
  (:mod:`flows.partition_stage`), so an event replayed anywhere else would escape the
  dedupe state of its edge. Only the events topic is a valid target.
- The producer is idempotent with ``acks=all``; a replay counts only once its delivery
  report came back without error.
- Idempotent: a replayed event carries its original ``event_id`` and ``edge_version``, so
  the flows' dedupe by edge version drops a second copy, and every projection stays as
  it was. Replays are also recorded in the Redis hash :data:`REPLAYED_KEY` (DLQ id to
  time and target), so ``list`` shows them and a second replay reports "already
  replayed" unless ``force``. The record is written after the delivery: if it is lost,
  a later replay sends the event again, which the dedupe drops.
- Not after a backfill: a backfill reads the edge store, where a dead letter's
  transition was committed before the flow ever saw it, so one that started after the
  dead letter was written already counted it in what it rebuilt (and the counts flow
  adopted that). Such a dead letter is not sent (``covered_by_backfill``, an OK status)
  when finished runs after it rebuilt every projection and read its edge (no
  ``--since``, or its ``occurred_at`` at or after it); when a run after it may have
  counted it only in part (some projections, an unknown ``occurred_at``, unfinished),
  it is ``refused`` unless ``force`` (:mod:`ops.backfill_runs`).
- A replay cannot know whether the running flows accept the bytes now. Before sending,
  it checks them against this code's :class:`~schemas.events.LikeEvent`; a record that
  still fails is skipped (``still_invalid``) unless ``force`` (e.g. the flows run a newer
  version than this CLI). A record that the flows still reject is simply dead-lettered
  again, under a new DLQ id and the coordinates of the replayed copy.
- Limits: dedupe forgets an edge idle for ``dedupe_ttl_s`` of event time, so a forced
  replay of an event older than that could be counted again (``likes reconcile``
  repairs it); and an event replayed after a later event of its edge was applied is
  dropped as stale, whatever the order the edge store saw (again: reconcile).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from pydantic import ValidationError

from core.settings import CommonSettings
from ops import backfill_runs
from ops.backfill import REBUILT
from ops.backfill_runs import BackfillRun
from schemas.events import LikeEvent
from schemas.redis_keys import DLQ_REPLAYED_KEY
from sinks.kafka_topic import produce_waiting

log = logging.getLogger(__name__)

REPLAYED_KEY = DLQ_REPLAYED_KEY  # DLQ id -> JSON {"at", "source", "target", "forced"}

PREVIEW_CHARS = 60
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_VISIBLE_WHITESPACE = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})

ReplayStatus = Literal[
    "replayed", "already_replayed", "covered_by_backfill", "still_invalid", "refused", "failed"
]
OK_STATUSES: frozenset[str] = frozenset({"replayed", "already_replayed", "covered_by_backfill"})


# ---------------------------------------------------------------- showing bytes safely


@dataclass(frozen=True)
class Shown:
    """Bytes made safe to print: the text itself, or base64 when it is not plain text."""

    encoding: Literal["utf-8", "base64"]
    data: str
    size: int
    """Length of the original bytes."""

    def preview(self, width: int = PREVIEW_CHARS) -> str:
        """One line, at most ``width`` characters (plus a marker when truncated)."""
        text = self.data.translate(_VISIBLE_WHITESPACE)
        if self.encoding == "base64":
            text = "base64:" + text
        return text if len(text) <= width else text[: width - 1] + "…"

    def to_json(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "data": self.data, "size": self.size}


def _printable(text: str) -> bool:
    for ch in text:
        if ch in "\t\n\r":
            continue
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            return False
    return True


def show_bytes(raw: bytes | None) -> Shown | None:
    """UTF-8 text without control characters as is, anything else as base64."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _printable(text):
        return Shown("utf-8", text, len(raw))
    return Shown("base64", base64.b64encode(raw).decode("ascii"), len(raw))


def safe_text(text: str) -> str:
    """A header value for a terminal: control characters escaped."""
    return "".join(
        ch
        if ch not in _BIDI_CONTROLS and (ch == " " or unicodedata.category(ch) != "Cc")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


# ---------------------------------------------------------------- reading the DLQ


@dataclass(frozen=True)
class _Record:
    """One DLQ record as read."""

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def dlq_id(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass
class _Read:
    records: list[_Record]
    low_watermarks: dict[int, int]


def _consumer(s: CommonSettings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            # required by the client, never joined (assign) and nothing is committed
            "group.id": f"likes-dlq-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


def _partitions(c: Consumer | Producer, topic: str, timeout_s: float) -> list[int] | None:
    """The partitions of ``topic``, or None when it does not exist."""
    meta = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or (
        meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    ):
        return None
    if meta.error is not None:
        raise RuntimeError(f"{topic}: {meta.error}")
    return sorted(meta.partitions)


def _read_dlq(s: CommonSettings, timeout_s: float) -> _Read:
    """Every record of the DLQ topic up to the end each partition had at the start."""
    c = _consumer(s)
    try:
        parts = _partitions(c, s.dlq_topic, timeout_s) or []
        ends: dict[int, int] = {}
        lows: dict[int, int] = {}
        starts = []
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(s.dlq_topic, p), timeout=timeout_s)
            lows[p] = low
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(s.dlq_topic, p, low))
        records: list[_Record] = []
        if not starts:
            return _Read(records, lows)
        c.assign(starts)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{s.dlq_topic}: not read to its end within {timeout_s:.0f}s "
                    f"({len(records)} records read, partitions {sorted(ends)} unfinished)"
                )
            for m in c.consume(1000, timeout=0.1):
                p = m.partition()
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ends.pop(p, None)
                    elif err.fatal():
                        raise RuntimeError(f"{s.dlq_topic}: {err}")
                    continue
                end = ends.get(p)
                if end is None or m.offset() >= end:
                    continue
                ts_type, ts = m.timestamp()
                records.append(
                    _Record(
                        partition=p,
                        offset=m.offset(),
                        timestamp_ms=None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts,
                        key=m.key(),
                        value=m.value(),
                        headers=_headers(m),
                    )
                )
                if m.offset() + 1 >= end:
                    ends.pop(p, None)
        return _Read(records, lows)
    finally:
        c.close()


def _headers(m: Message) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in m.headers() or []:
        out.setdefault(k, v if v is not None else b"")
    return out


def _header_text(h: dict[str, bytes], name: str) -> str | None:
    v = h.get(name)
    return v.decode("utf-8", "replace") if v is not None else None


def _header_int(h: dict[str, bytes], name: str) -> int | None:
    v = _header_text(h, name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# ---------------------------------------------------------------- the listing


@dataclass
class DeadLetterView:
    """One dead-lettered source message (all its identical DLQ copies)."""

    id: str
    """``<dlq_partition>:<dlq_offset>`` of the earliest copy."""
    dlq_ids: list[str]
    time: str | None
    """Timestamp of the earliest DLQ copy, ISO 8601 UTC."""
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    reason: str
    key: bytes | None = field(repr=False)
    value: bytes | None = field(repr=False)
    event_id: str | None = None
    """The original event's ``event_id``, when the value is JSON carrying one."""
    replayed_at: str | None = None
    replay_target: str | None = None

    @property
    def replayed(self) -> bool:
        return self.replayed_at is not None

    @property
    def source(self) -> str:
        """``topic/partition@offset`` (``?`` for what the headers do not say)."""
        t = self.source_topic if self.source_topic is not None else "?"
        p = self.source_partition if self.source_partition is not None else "?"
        o = self.source_offset if self.source_offset is not None else "?"
        return f"{t}/{p}@{o}"

    @property
    def source_ref(self) -> str:
        """The identity of the source message (the dead letter's ``event_id`` header)."""
        return f"dlq:{self.source_topic}:{self.source_partition}:{self.source_offset}"

    def to_json(self) -> dict[str, Any]:
        """Complete and printable: bytes as text or base64 (see :func:`show_bytes`)."""
        key, value = show_bytes(self.key), show_bytes(self.value)
        return {
            "id": self.id,
            "copies": len(self.dlq_ids),
            "dlq_ids": self.dlq_ids,
            "time": self.time,
            "source": {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self.source_offset,
            },
            "reason": self.reason,
            "key": key.to_json() if key else None,
            "value": value.to_json() if value else None,
            "event_id": self.event_id,
            "replayed": self.replayed,
            "replayed_at": self.replayed_at,
            "replay_target": self.replay_target,
        }


def _event_id(value: bytes | None) -> str | None:
    if not value:
        return None
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    eid = obj.get("event_id") if isinstance(obj, dict) else None
    return eid if isinstance(eid, str) else None


def _group(records: list[_Record]) -> list[DeadLetterView]:
    """One view per source message: copies share source coordinates, key and value."""
    groups: dict[tuple[Any, ...], DeadLetterView] = {}
    for r in sorted(records, key=lambda r: (r.timestamp_ms or 0, r.partition, r.offset)):
        h = r.headers
        gkey = (_header_text(h, "event_id"), r.key, r.value)
        view = groups.get(gkey)
        if view is None:
            groups[gkey] = DeadLetterView(
                id=r.dlq_id,
                dlq_ids=[r.dlq_id],
                time=_iso(r.timestamp_ms),
                source_topic=_header_text(h, "src_topic"),
                source_partition=_header_int(h, "src_partition"),
                source_offset=_header_int(h, "src_offset"),
                reason=_header_text(h, "error") or "(no reason given)",
                key=r.key,
                value=r.value,
                event_id=_event_id(r.value),
            )
        else:
            view.dlq_ids.append(r.dlq_id)
    return list(groups.values())


def _mark_replayed(r: redis.Redis, views: list[DeadLetterView]) -> None:
    ids = [i for v in views for i in v.dlq_ids]
    if not ids:
        return
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 1000):
        chunk = ids[i : i + 1000]
        for dlq_id, raw in zip(chunk, r.hmget(REPLAYED_KEY, chunk), strict=True):
            if raw is None:
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                found[dlq_id] = rec
    for v in views:
        # a record counts only for the same source message: a DLQ topic that was
        # recreated reuses ids, and must not inherit the old topic's replays
        recs = [found[i] for i in v.dlq_ids if found.get(i, {}).get("source") == v.source_ref]
        if recs:
            latest = max(recs, key=lambda rec: str(rec.get("at")))
            v.replayed_at = str(latest.get("at"))
            v.replay_target = str(latest.get("target"))


def _all_dead_letters(
    s: CommonSettings, timeout_s: float, *, need_replays: bool = True
) -> tuple[list[DeadLetterView], _Read]:
    read = _read_dlq(s, timeout_s)
    views = _group(read.records)
    try:
        _mark_replayed(backfill_runs.client(s), views)
    except redis.RedisError as e:
        if need_replays:
            raise
        log.warning("replay records unavailable (Redis: %s): none shown as replayed", e)
    return views, read


def list_dead_letters(
    s: CommonSettings, limit: int | None = 100, *, timeout_s: float = 30.0
) -> list[DeadLetterView]:
    """Every dead-lettered message, oldest first; with ``limit``, only the newest ``limit``.

    Reads the whole DLQ topic (to its end at the start of the call), within ``timeout_s``
    (else :class:`TimeoutError`). Without Redis, nothing is shown as replayed.
    """
    views, _ = _all_dead_letters(s, timeout_s, need_replays=False)
    return views[-limit:] if limit else views


def dlq_depth(s: CommonSettings, timeout_s: float = 5.0) -> int:
    """Records in the DLQ topic (end minus start offsets; copies and replayed included)."""
    c = _consumer(s)
    try:
        total = 0
        for p in _partitions(c, s.dlq_topic, timeout_s) or []:
            low, high = c.get_watermark_offsets(TopicPartition(s.dlq_topic, p), timeout=timeout_s)
            total += max(0, high - low)
        return total
    finally:
        c.close()


def render_table(views: list[DeadLetterView], total: int | None = None) -> None:
    """A rich table of the dead letters; every cell is plain text (no markup)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(views)} dead letters" + (f" (of {total})" if total else ""))
    table.add_column("id", no_wrap=True)
    table.add_column("time (UTC)", overflow="fold", max_width=10)
    table.add_column("source", overflow="fold")
    table.add_column("reason", overflow="fold", ratio=1, min_width=12)
    table.add_column("value", overflow="fold", ratio=1, min_width=12)
    table.add_column("replayed", no_wrap=True)
    for v in views:
        value = show_bytes(v.value)
        copies = f" ({len(v.dlq_ids)} copies)" if len(v.dlq_ids) > 1 else ""
        table.add_row(
            Text(v.id),
            Text((v.time or "?").replace("T", " ")[:19]),
            Text(safe_text(v.source)),
            Text(safe_text(v.reason) + copies),
            Text(value.preview() if value else "(none)"),
            Text("yes" if v.replayed else "no"),
        )
    Console().print(table)


# ---------------------------------------------------------------- replay


@dataclass
class ReplayItem:
    """What happened to one chosen dead letter."""

    id: str
    status: ReplayStatus
    detail: str = ""
    source: str = ""
    event_id: str | None = None
    target: str | None = None
    """``likes.events/<partition>@<offset>`` of the replayed copy."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "detail": self.detail,
            "source": self.source,
            "event_id": self.event_id,
            "target": self.target,
        }


@dataclass
class ReplayReport:
    """The outcome per chosen dead letter, and the ids that match none."""

    items: list[ReplayItem] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: all replayed or already replayed; 2: unknown ids (nothing sent); 1: else."""
        if self.unknown_ids:
            return 2
        return 0 if all(i.status in OK_STATUSES for i in self.items) else 1

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.status] = out.get(i.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [i.to_json() for i in self.items],
            "unknown_ids": self.unknown_ids,
            "counts": self.counts(),
        }

    def render(self) -> str:
        """One line per item, then the totals."""
        lines = [f"unknown id: {safe_text(i)}" for i in self.unknown_ids]
        for i in self.items:
            text = {
                "replayed": f"replayed to {i.target}",
                "already_replayed": "already replayed (--force to send again)",
                "covered_by_backfill": "not sent: already counted by a backfill",
            }.get(i.status, i.status.replace("_", " "))
            lines.append(f"{i.id}: {text}" + (f": {safe_text(i.detail)}" if i.detail else ""))
        totals = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(self.counts().items()))
        if self.unknown_ids:
            lines.append("nothing replayed: unknown ids")
        else:
            lines.append(totals or "nothing to replay")
        return "\n".join(lines)


def _producer(s: CommonSettings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )


def _occurred_at(value: bytes | None) -> datetime | None:
    """The ``occurred_at`` of a dead letter's value, when it is JSON carrying a valid one."""
    try:
        obj = json.loads(value or b"")
        raw = obj.get("occurred_at") if isinstance(obj, dict) else None
        at = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except (ValueError, UnicodeDecodeError):
        return None
    return at if at is None or at.tzinfo is not None else at.replace(tzinfo=UTC)


def _dead_at(v: DeadLetterView) -> datetime | None:
    return datetime.fromisoformat(v.time) if v.time else None


def _backfilled(v: DeadLetterView, runs: list[BackfillRun]) -> backfill_runs.Verdict:
    dead_at = _dead_at(v)
    if dead_at is None:  # no timestamp: any recorded run may have come after it
        return backfill_runs.Verdict(
            backfill_runs.Coverage.UNCERTAIN if runs else backfill_runs.Coverage.NONE,
            "the dead letter has no timestamp; a recorded backfill may have counted it",
        )
    return backfill_runs.coverage(runs, dead_at, _occurred_at(v.value), REBUILT)


def _check(
    v: DeadLetterView,
    s: CommonSettings,
    partitions: set[int],
    force: bool,
    runs: list[BackfillRun],
) -> ReplayItem:
    """The item if ``v`` is not to be sent; ``status="replayed"`` (tentative) if it is."""
    item = ReplayItem(v.id, "replayed", source=v.source, event_id=v.event_id)
    if v.replayed and not force:
        item.status = "already_replayed"
        item.detail = f"at {v.replayed_at} to {v.replay_target}"
        return item
    if v.source_topic != s.events_topic:
        item.status, item.detail = "refused", f"source topic is not {s.events_topic}"
        return item
    if v.source_partition is None or v.source_partition not in partitions:
        item.status = "refused"
        item.detail = f"{s.events_topic} has no partition {v.source_partition}"
        return item
    if v.value is None:
        item.status, item.detail = "refused", "no value to replay"
        return item
    try:
        LikeEvent.model_validate_json(v.value)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "value"
        why = f"the current event schema rejects it ({where}: {first.get('msg', '')})"
        if not force:
            item.status = "still_invalid"
            item.detail = why + "; --force sends it anyway (it would be dead-lettered again"
            item.detail += " unless the running flows accept it)"
        else:
            item.detail = why + "; sent anyway: the flows will dead-letter it again if so"
        return item
    if force:
        return item
    # only an event the flows can apply is a transition a backfill may already have read
    backfilled = _backfilled(v, runs)
    if backfilled.coverage is backfill_runs.Coverage.COVERED:
        item.status, item.detail = "covered_by_backfill", backfilled.detail
    elif backfilled.coverage is backfill_runs.Coverage.UNCERTAIN:
        item.status = "refused"
        item.detail = backfilled.detail + (
            "; replaying could count it twice: `likes reconcile` shows whether it is "
            "missing, --force sends it anyway"
        )
    return item


def replay(
    s: CommonSettings,
    ids: Sequence[str] | None,
    *,
    force: bool = False,
    timeout_s: float = 30.0,
) -> ReplayReport:
    """Re-inject the chosen dead letters (``ids``; None for all) into their source partition.

    Unknown ids: nothing is sent, and the report lists them. See the module docstring
    for what is guaranteed and what a replay cannot know.
    """
    views, read = _all_dead_letters(s, timeout_s)
    report = ReplayReport()
    by_id = {i: v for v in views for i in v.dlq_ids}
    if ids is None:
        chosen = views
    else:
        wanted = [i.strip() for i in ids]
        report.unknown_ids = [i for i in wanted if i not in by_id]
        if report.unknown_ids:
            return report
        seen: set[str] = set()
        chosen = []
        for i in wanted:
            v = by_id[i]
            if v.id not in seen:
                seen.add(v.id)
                chosen.append(v)
    producer = _producer(s)
    partitions = set(_partitions(producer, s.events_topic, timeout_s) or [])
    runs = backfill_runs.runs(s)
    items = [_check(v, s, partitions, force, runs) for v in chosen]
    committed = [_occurred_at(v.value) or _dead_at(v) for v in views]
    cutoff = backfill_runs.trim_cutoff(committed, datetime.now(UTC))
    if cutoff is not None:
        backfill_runs.trim(s, cutoff)
    report.items = items
    to_send = [(v, it) for v, it in zip(chosen, items, strict=True) if it.status == "replayed"]
    # per source partition in source order: two dead-lettered events of one edge go back
    # in the order they came
    to_send.sort(key=lambda vi: (vi[0].source_partition or 0, vi[0].source_offset or 0))
    now = datetime.now(UTC)
    delivered: list[tuple[DeadLetterView, ReplayItem]] = []
    for v, it in to_send:

        def on_delivery(
            err: KafkaError | None, msg: Message, v: DeadLetterView = v, it: ReplayItem = it
        ) -> None:
            if err is not None:
                it.status, it.detail = "failed", f"delivery failed: {err}"
            else:
                it.target = f"{msg.topic()}/{msg.partition()}@{msg.offset()}"
                delivered.append((v, it))

        headers = [("replayed_from", v.id.encode()), ("replayed_at", _iso_now(now).encode())]
        if v.event_id is not None:
            headers.insert(0, ("event_id", v.event_id.encode()))
        try:
            produce_waiting(
                producer,
                topic=s.events_topic,
                key=v.key,
                value=v.value,
                partition=v.source_partition,
                headers=headers,
                on_delivery=on_delivery,
            )
        except KafkaException as e:
            it.status, it.detail = "failed", f"not sent: {e}"
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    for _, it in to_send:
        if it.status == "replayed" and it.target is None:  # no delivery report yet
            it.status = "failed"
            it.detail = f"not acknowledged within {timeout_s:.0f}s ({remaining} outstanding)"
    if delivered:
        r = backfill_runs.client(s)
        pipe = r.pipeline(transaction=False)
        for v, it in delivered:
            rec = {"at": _iso_now(now), "source": v.source_ref, "target": it.target}
            for dlq_id in v.dlq_ids:
                pipe.hset(REPLAYED_KEY, dlq_id, json.dumps({**rec, "forced": force}))
        pipe.execute()
        _prune(r, read.low_watermarks)
    return report


def _iso_now(now: datetime) -> str:
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _prune(r: redis.Redis, lows: dict[int, int]) -> None:
    """Forget replay records of DLQ records that retention already deleted."""
    stale = []
    for dlq_id in r.hkeys(REPLAYED_KEY):
        p, _, o = str(dlq_id).partition(":")
        try:
            if int(o) < lows.get(int(p), 0):
                stale.append(dlq_id)
        except ValueError:
            stale.append(dlq_id)
    if stale:
        r.hdel(REPLAYED_KEY, *stale)
