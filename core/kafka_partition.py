"""Which partition a keyed Kafka record lands in: the Java client's default partitioner.

Kafka Connect (so Debezium) sends each ``likes.events`` record with the edge key
(``"post_id:user_id"``, UTF-8 by the String converter) and no explicit partition, so the
producer places it at ``toPositive(murmur2(key)) % partitions``. :func:`partition_for`
computes the same, so the backfill can say which of a post's edges share a partition
with which records (``sinks.outbox_flow_state``). Matches Kafka's own test vectors
(``UtilsTest.testMurmur2``) and, in the integration tests, Connect's real placement.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as an unsigned 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java producer's default partitioner picks for ``key``."""
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def edge_key(post_id: int, user_id: int) -> bytes:
    """The Kafka key of an edge's events (``like_outbox.edge_key``)."""
    return f"{post_id}:{user_id}".encode()
