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
