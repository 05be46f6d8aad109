"""How far CDC is behind: outbox commits not yet on Kafka, and WAL the slot retains."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from schemas.cdc import SLOT_NAME


def topic_tail_times(
    bootstrap: str, topic: str, timeout: float = 5.0, depth: int = 20
) -> list[datetime]:
    """``occurred_at`` of the last ``depth`` messages of each partition of ``topic``."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "likes-status",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        meta = c.list_topics(topic, timeout=timeout).topics[topic]
        tails = []
        for p in meta.partitions:
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > 0:
                tails.append(TopicPartition(topic, p, max(0, high - depth)))
        if not tails:
            return []
        c.assign(tails)
        out = []
        for msg in c.consume(len(tails) * depth, timeout=timeout):
            if msg.error() is None and msg.value():
                try:
                    out.append(datetime.fromisoformat(json.loads(msg.value())["occurred_at"]))
                except (ValueError, KeyError, TypeError):
                    continue
        return out
    finally:
        c.close()


def cdc_lag(postgres_url: str, bootstrap: str, topic: str) -> dict[str, Any]:
    """Seconds from the newest outbox commit to the newest event on Kafka, and slot WAL."""
    with psycopg.connect(postgres_url, connect_timeout=3) as conn:
        newest = conn.execute("SELECT max(created_at) FROM like_outbox").fetchone()
        slot = conn.execute(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn),"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (SLOT_NAME,),
        ).fetchone()
    out: dict[str, Any] = {"slot": None}
    if slot:
        out["slot"] = {
            "name": SLOT_NAME,
            "active": slot[0],
            "retained_wal_bytes": int(slot[1]),
            "unconfirmed_wal_bytes": int(slot[2]),
        }
    last_commit = newest[0] if newest else None
    tails = topic_tail_times(bootstrap, topic)
    last_published = max(tails) if tails else None
    if last_commit is None:
        out["lag_seconds"] = 0.0
    elif last_published is None:
        out["lag_seconds"] = None
    else:
        out["lag_seconds"] = max(0.0, (last_commit - last_published).total_seconds())
    out["last_commit"] = last_commit.isoformat() if last_commit else None
    out["last_published"] = last_published.isoformat() if last_published else None
    return out
