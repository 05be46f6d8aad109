"""Redis key names of the read models (contract section 6), in one place for every
writer (sinks), reader (API) and operator tool (status, reconcile, demo)."""

from __future__ import annotations

HOT_KEY = "likes:hot"
TRENDING_KEY = "likes:trending"


def count_key(post_id: int) -> str:
    """A post's like count, a decimal string; absent means no likes recorded."""
    return f"likes:count:{post_id}"


def count_seq_key(post_id: int) -> str:
    """The version (sum of edge versions) of the count stored at :func:`count_key`."""
    return f"likes:count_seq:{post_id}"


def recent_key(post_id: int) -> str:
    """A post's most recent current likers: a list of user ids, newest first (at most
    20); absent means none recorded."""
    return f"likes:recent:{post_id}"


def recent_seq_key(post_id: int) -> str:
    """The version (``RecentLikers.seq``) of the list stored at :func:`recent_key`."""
    return f"likes:recent_seq:{post_id}"


def flow_progress_key(flow: str) -> str:
    """The hash of a flow's next offset per Kafka partition (``likes status`` lag)."""
    return f"likes:flow_progress:{flow}"


def flow_written_key(flow: str, member: str = "*") -> str:
    """A flow process's ``written_through`` (``flows.progress``): a unix time before
    which everything its gathered sinks were handed is written (``*``: a pattern for
    every process of ``flow``)."""
    return f"likes:flow_written:{flow}:{member}"


def flow_heartbeat_key(flow: str) -> str:
    """The key a running flow process refreshes every second: ``"<pid> <unix time>"``."""
    return f"likes:flow_heartbeat:{flow}"


LAST_DRIFT_KEY = "likes:last_drift"
"""JSON of the last ``likes reconcile`` result: when, and drifting posts per projection."""

DLQ_REPLAYED_KEY = "likes:dlq:replayed"
"""Hash of dead letters already replayed: DLQ id -> JSON (when, source, target)."""

BACKFILL_RUNS_KEY = "likes:backfill:runs"
"""Hash of ``likes backfill`` runs: start time -> JSON (since, projections, status)."""
