"""Names of what a benchmark creates (topics, groups, schemas), each carrying the bench PID.

The PID in every name lets a later run remove what a crashed run left behind
(:mod:`bench.cleanup`) without touching what a running benchmark still uses.
"""

from __future__ import annotations

import os
import re
import uuid

TOPIC_PID = re.compile(r"bench\.\w+\.(\d+)\.")
GROUP_PID = re.compile(r"bench-\w+-(\d+)-")  # Quix names its internal topics after the group
SCHEMA_PID = re.compile(r"bench_(\d+)_[0-9a-f]+$")


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def topic(kind: str) -> str:
    """``bench.<kind>.<pid>.<random>``."""
    return f"bench.{kind}.{os.getpid()}.{_tag()}"


def group(kind: str) -> str:
    """``bench-<kind>-<pid>-<random>``: a consumer group (and Quix's topic prefix)."""
    return f"bench-{kind}-{os.getpid()}-{_tag()}"


def schema() -> str:
    """``bench_<pid>_<random>``: a Postgres schema."""
    return f"bench_{os.getpid()}_{_tag()}"


def owner_pid(name: str) -> int | None:
    """The PID of the bench process that created ``name``, if it is one of ours."""
    m = TOPIC_PID.match(name) or GROUP_PID.search(name) or SCHEMA_PID.match(name)
    return int(m.group(1)) if m else None
