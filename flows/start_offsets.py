"""Where a flow with a fresh recovery store starts reading: ``start-offsets.json`` in the
store, written by ``likes flows-reset`` (``ops.flow_reset``) before the flow starts.

Guarantee: a flow whose store holds the file starts each partition without recovery
state at the offset recorded there (the topics' end when the store was reset) instead of
the beginning of retention; once the flow has snapshotted its own offsets, recovery
decides and the file no longer matters. Without the file nothing changes.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE = "start-offsets.json"
Offsets = dict[str, dict[int, int]]  # topic -> partition -> offset


def write(store: Path, offsets: Offsets) -> None:
    """Record ``offsets`` in the (new) recovery store ``store``."""
    store.mkdir(parents=True, exist_ok=True)
    text = json.dumps({t: {str(p): o for p, o in ps.items()} for t, ps in offsets.items()})
    (store / FILE).write_text(text + "\n")


def read(store: Path) -> Offsets:
    """The offsets recorded in ``store``, or none."""
    path = store / FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {t: {int(p): int(o) for p, o in ps.items()} for t, ps in raw.items()}
