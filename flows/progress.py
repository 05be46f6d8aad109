"""Which offsets a flow process has read, published for ``likes status``.

The flow records the next offset of each partition it reads; a daemon thread writes
them to the Redis hash ``likes:flow_progress:<flow>`` every second. Status compares them
with Kafka's end offsets to report lag. Best effort: a Redis outage only hides lag.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TypeVar

import redis
from bytewax.connectors.kafka import KafkaSourceMessage

from schemas.redis_keys import flow_heartbeat_key, flow_progress_key

log = logging.getLogger(__name__)
_offsets: dict[int, int] = {}
_lock = threading.Lock()
M = TypeVar("M", bound=KafkaSourceMessage)  # type: ignore[type-arg]


def track_batch(batch: list[M]) -> None:
    """Record that every message of ``batch`` was read."""
    newest: dict[int, int] = {}
    for msg in batch:
        if msg.offset is not None and msg.partition is not None:
            newest[msg.partition] = max(msg.offset + 1, newest.get(msg.partition, 0))
    with _lock:
        for p, o in newest.items():
            if o > _offsets.get(p, 0):
                _offsets[p] = o


def _publish_forever(url: str, flow: str, every_s: float, stop: threading.Event) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2)
    while not stop.wait(every_s):
        with _lock:
            snapshot = dict(_offsets)
        try:
            client.set(flow_heartbeat_key(flow), f"{os.getpid()} {time.time()}", ex=60)
            if snapshot:
                client.hset(
                    flow_progress_key(flow), mapping={str(p): o for p, o in snapshot.items()}
                )
        except redis.RedisError as e:
            log.debug("progress publish failed: %s", e)


def start_publisher(url: str, flow: str, every_s: float = 1.0) -> threading.Event:
    """Publish progress in the background; set the returned event to stop."""
    stop = threading.Event()
    threading.Thread(
        target=_publish_forever,
        args=(url, flow, every_s, stop),
        daemon=True,
        name=f"progress-{flow}",
    ).start()
    return stop
