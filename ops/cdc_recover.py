"""``likes cdc recover``: the way back after the replication slot was dropped or invalidated.

When the slot is lost, the WAL of the events committed since is gone for CDC, and
Connect refuses to start (``devstack.components.check_slot``). The outbox is the
durable record of those events (``like_outbox`` keeps rows for
``LIKES_OUTBOX_RETENTION_S``), so recovery republishes them instead of skipping them:

1. Connect is stopped (through the supervisor).
2. The slot is created anew (an invalidated one is dropped first): from this instant
   every commit is retained for Debezium.
3. Every outbox row committed before that instant (since ``since``, by default every row
   the outbox still holds) is produced to ``likes.events`` exactly as Debezium would:
   key ``edge_key``, value the payload JSON, header ``event_id``, and the partition
   Java's default partitioner picks for the key (murmur2), so an edge's events stay in
   one partition. Idempotent producer, ``acks=all``, every delivery checked.
4. Connect's stored offsets are removed and Connect is started: it streams from the new
   slot.

Guarantee: every transition committed while the slot was missing reaches Kafka at least
once, provided its outbox row was not purged yet (the report's ``outbox_holds_since``: if the
slot was lost before that, ``likes backfill`` and ``likes reconcile --repair`` repair
the rest). Events published twice (republished, and streamed by
Debezium from the new slot) are dropped by the flows' dedupe by edge version, as any
duplicate is; an edge's republished older event arriving after a newer one is stale and
dropped, and the newer one already carried the transition (dedupe accepts version gaps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from confluent_kafka import Producer

from core.settings import CommonSettings
from core.topology import is_cluster
from schemas.cdc import SLOT_NAME
from sinks.kafka_topic import produce_waiting

BATCH = 5_000


@dataclass
class RecoverReport:
    """What ``recover`` did."""

    slot: str = ""
    slot_created_at: str = ""
    since: str | None = None
    republished: int = 0
    oldest_republished: str | None = None
    outbox_holds_since: str | None = None
    connect: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


def _stop_connect(s: CommonSettings) -> None:
    from devstack.supervisor import Supervisor

    sup = Supervisor(s)
    if sup.reachable():
        sup.stop("connect")


def _start_connect(s: CommonSettings) -> str:
    from devstack import stack

    stack.up(s, only=["connect"])
    return "running"


def ensure_slot(conn: psycopg.Connection) -> tuple[str, datetime]:
    """Create the slot unless a usable one exists: what was done, and when (the instant
    from which the slot retains commits)."""
    row = conn.execute(
        "SELECT wal_status, active_pid FROM pg_replication_slots WHERE slot_name = %s",
        (SLOT_NAME,),
    ).fetchone()
    action = "present"
    if row is not None and row[0] == "lost":
        if row[1] is not None:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[1],))
        conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT_NAME,))
        row, action = None, "recreated"
    if row is None:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT_NAME,))
        action = "created" if action == "present" else action
    now = conn.execute("SELECT clock_timestamp()").fetchone()
    assert now is not None
    return action, now[0]


_ROWS_SQL = """SELECT event_id::text, edge_key, payload::text, created_at FROM like_outbox
WHERE created_at < %(until)s AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (created_at, event_id) > (%(after_t)s, %(after_id)s::uuid)
  AND action <> 'FlowState'  -- a backfill's truth at a position a republish cannot keep
ORDER BY created_at, event_id LIMIT %(n)s"""


def republish(
    s: CommonSettings,
    conn: psycopg.Connection,
    until: datetime,
    since: datetime | None,
    *,
    queue_max_messages: int = 100_000,
) -> tuple[int, str | None]:
    """Produce the outbox rows committed before ``until`` (and since ``since``) to the
    events topic as Debezium does; the number delivered and the oldest row's time. Any
    number of rows: the producer's queue (``queue_max_messages``) is waited on when full."""
    producer = Producer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "partitioner": "murmur2_random",  # Java's default for keyed records
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "queue.buffering.max.messages": queue_max_messages,
        }
    )
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    sent, oldest = 0, None
    after: tuple[Any, str] = (datetime.min.replace(tzinfo=until.tzinfo), "0" * 32)
    while True:
        params = {
            "until": until,
            "since": since,
            "after_t": after[0],
            "after_id": after[1],
            "n": BATCH,
        }
        rows = conn.execute(_ROWS_SQL, params).fetchall()
        for event_id, key, payload, created in rows:
            oldest = oldest or created.isoformat()
            produce_waiting(
                producer,
                120.0,
                topic=s.events_topic,
                key=key.encode(),
                value=payload.encode(),
                headers=[("event_id", event_id.encode())],
                on_delivery=delivered,
            )
            producer.poll(0)
        sent += len(rows)
        if len(rows) < BATCH:
            break
        after = (rows[-1][3], rows[-1][0])
    left = producer.flush(120)
    if left or failures:
        raise RuntimeError(
            f"republishing failed: {left} undelivered, errors: {sorted(set(failures))[:3]}"
        )
    return sent, oldest


def recover(s: CommonSettings, since: datetime | None = None) -> RecoverReport:
    """Stop Connect, re-create the slot, republish the outbox, start Connect."""
    from devstack.components import connect_offsets

    if is_cluster(s):
        raise RuntimeError(
            "likes cdc recover handles the single profile's standalone Connect; in the "
            "cluster profile stop both workers, delete the connector's offsets "
            "(`DELETE /connectors/likes-outbox/offsets` on a stopped connector) and follow "
            "the same runbook by hand (README)"
        )
    t0 = time.monotonic()
    report = RecoverReport(since=since.isoformat() if since else None)
    _stop_connect(s)
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        report.slot, created_at = ensure_slot(conn)
        report.slot_created_at = created_at.isoformat()
        report.republished, report.oldest_republished = republish(s, conn, created_at, since)
        row = conn.execute("SELECT min(created_at) FROM like_outbox").fetchone()
    held = row[0] if row else None
    report.outbox_holds_since = held.isoformat() if held else None
    report.notes.append(
        "transitions committed before the outbox's oldest row (outbox_holds_since) cannot "
        "be republished: if the slot was lost before then, also run `likes backfill` and "
        "`likes reconcile --repair`"
    )
    for path in connect_offsets(s):
        path.unlink(missing_ok=True)
    report.connect = _start_connect(s)
    report.seconds = round(time.monotonic() - t0, 3)
    return report
