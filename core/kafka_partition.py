"""Which partition a keyed Kafka record lands in: the Java client's default partitioner.

Kafka Connect (so Debezium) sends each ``likes.events`` record with the edge key
(``"post_id:user_id"``, UTF-8 by the String converter) and no explicit partition, so the
producer places it at ``toPositive(murmur2(key)) % partitions``. :func:`partition_for`
computes the same (MurmurHash2 from the ``murmurhash2`` package, compiled), and
:func:`key_hash` the part that does not depend on the partition count: the API stores it
with each new edge (``post_likes.key_hash``, migration 009, which computes the same in
Postgres for edges written without it), so the backfill can group a post's edges by
partition inside Postgres (``flows.backfill_chunks``). Matches Kafka's own test vectors
(``UtilsTest.testMurmur2``) and, in the integration tests, Connect's real placement.
"""

from __future__ import annotations

from murmurhash2 import murmurhash2 as _murmurhash2

_SEED = 0x9747B28C  # Kafka's Utils.murmur2 is MurmurHash2 with this seed


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as an unsigned 32-bit int."""
    return int(_murmurhash2(data, _SEED))


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java producer's default partitioner picks for ``key``."""
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def edge_key(post_id: int, user_id: int) -> bytes:
    """The Kafka key of an edge's events (``like_outbox.edge_key``)."""
    return f"{post_id}:{user_id}".encode()


def key_hash(post_id: int, user_id: int) -> int:
    """``post_likes.key_hash`` of an edge: the non-negative hash the partitioner takes
    modulo the partition count (migration 009 computes the same in Postgres)."""
    return murmur2(edge_key(post_id, user_id)) & 0x7FFFFFFF
