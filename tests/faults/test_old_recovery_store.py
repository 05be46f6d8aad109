"""A flow process given a recovery store from before :mod:`flows.routing` (CHANGELOG,
"Upgrading") refuses to start, as a real process, before it reads a message or writes a
projection: it exits 2 with one error line (no traceback) that names the runbook
(``likes flows-reset``), and the store is left as it was, so the operator can still
reset it.

The running stack's own counts flow is not touched: the process under test gets a
recovery store of its own (``LIKES_RECOVERY_DIR``), and it refuses before it would serve
its metrics port, which the stack's counts flow holds.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from core.settings import CommonSettings, FlowSettings
from flows.routing import partition_key
from tests.ops.backfill_runs import LIKES

pytestmark = pytest.mark.integration


def _rows(part: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(part) as db:
        return sorted(db.execute("SELECT step_id, state_key FROM snaps").fetchall())


def test_a_flow_refuses_a_store_with_the_old_partition_keys(
    stack: CommonSettings, tmp_path: Path
) -> None:
    store = FlowSettings().model_copy(update={"recovery_dir": tmp_path}).recovery_path("counts")
    store.mkdir(parents=True)
    init_db_dir(store, 2)
    part = store / "part-0.sqlite3"
    with sqlite3.connect(part) as db:  # partition 3's dedupe state, under the old key
        db.executemany(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, 1, ?)",
            [
                ("likes_counts.dedupe_window", "3", b"old state"),
                ("likes_counts.dedupe_window", partition_key(4), b"new state"),
            ],
        )
    before = _rows(part)
    started = time.monotonic()
    done = subprocess.run(
        [LIKES, "flow", "counts"],
        env={**os.environ, "LIKES_RECOVERY_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "error: flow counts refused to start" in output, output[-2000:]
    assert "partitions 3 under keys" in output and "Traceback" not in output, output[-2000:]
    assert "likes flows-reset" in output, output[-2000:]
    assert "flow counts starting" not in output  # refused before the dataflow ran
    assert _rows(part) == before  # the store is left for the reset
    assert time.monotonic() - started < 120
