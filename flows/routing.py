"""Where Bytewax runs a key's state, and the state keys of the per-partition stages.

Guarantees:

* :func:`worker_of` is the worker that Bytewax's stateful operators (``stateful_batch``,
  ``stateful_map``, ...) send a key to among ``workers``: Bytewax 0.21 hashes the key's
  string with Rust's ``DefaultHasher`` (SipHash-1-3, keys 0 and 0, the bytes then
  ``0xff``) and takes it modulo the worker count. ``tests/flows/test_routing.py`` checks
  this against Bytewax itself, so a Bytewax that routes otherwise fails the build
  instead of silently sending every poll across processes.
* :func:`partition_key` gives Kafka partition ``p`` a key that Bytewax places on worker
  ``p % n`` for every worker count ``n`` dividing 840 (1 to 8, 10, 12, ...): the
  partitions' stages are spread evenly over the workers. The plain ``str(p)`` keys used
  before put 9 of 12 partitions on one of two workers, and none of them on worker 0 of
  four. A key never changes (recovery state is stored under it).
* :func:`reads_partition` is how a flow process that runs one worker chooses the Kafka
  partitions it reads (:mod:`flows.kafka_input`): exactly those whose stage runs in that
  process, so a poll is decoded and deduplicated where it was read and nothing crosses
  processes before the per-post counts.
"""

from __future__ import annotations

import functools

_MASK = (1 << 64) - 1
SPREAD = 840
"""Partition keys hash to ``p % SPREAD`` modulo ``SPREAD`` (the smallest number that
every worker count up to 8 divides)."""


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes) -> int:
    """SipHash-1-3 of ``data`` with the keys 0 and 0 (Rust's ``DefaultHasher::new()``)."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573

    def sip_round() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _MASK
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _MASK
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _MASK
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _MASK
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        sip_round()
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    sip_round()
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        sip_round()
    return (v0 ^ v1 ^ v2 ^ v3) & _MASK


def worker_of(key: str, workers: int) -> int:
    """The worker (of ``workers``) Bytewax's stateful operators route ``key`` to."""
    return siphash13(key.encode() + b"\xff") % workers


# :func:`find_salt` of partitions 0..63, so that a flow does not spend its first polls
# searching (about 13,000 hashes for 12 partitions, 0.2 s); a test checks the table
SALTS = (
    347, 2368, 491, 2321, 3437, 1557, 502, 7, 681, 484, 555, 326, 66, 401, 92, 109,
    706, 832, 58, 307, 3351, 629, 2182, 1249, 1753, 659, 700, 1571, 1777, 95, 3313, 2046,
    1218, 1886, 145, 359, 730, 72, 242, 498, 1909, 3322, 1687, 1359, 583, 265, 242, 521,
    182, 573, 681, 679, 26, 589, 1382, 803, 992, 136, 987, 1571, 1928, 467, 1619, 618,
)  # fmt: skip


def find_salt(partition: int) -> int:
    """The smallest salt whose ``"<partition>:<salt>"`` hashes to ``partition`` modulo
    :data:`SPREAD`."""
    want = partition % SPREAD
    salt = 0
    while siphash13(f"{partition}:{salt}".encode() + b"\xff") % SPREAD != want:
        salt += 1
    return salt


@functools.cache
def partition_key(partition: int) -> str:
    """The state key of Kafka partition ``partition``'s stages: ``"<p>:<salt>"``, with
    the salt of :func:`find_salt`."""
    salt = SALTS[partition] if 0 <= partition < len(SALTS) else find_salt(partition)
    return f"{partition}:{salt}"


def reads_partition(partition: int, reader: tuple[int, int] | None) -> bool:
    """Whether the process ``reader`` (its index, the flow's process count; each runs
    one worker) reads Kafka partition ``partition``; every process may when None."""
    if reader is None:
        return True
    index, processes = reader
    return worker_of(partition_key(partition), processes) == index
