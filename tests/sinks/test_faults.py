"""The fault-injection test hook (``sinks.faults``): what a fault file does to a write."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from sinks.clickhouse_sinks import ClickHouseSink, event_row, is_transient
from sinks.faults import InjectedFault, WriteFault, fault_file, read_fault, with_fault


def _write(path: Path, body: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def test_no_file_means_no_fault(tmp_path: Path) -> None:
    path = fault_file(tmp_path, "clickhouse")
    assert path == tmp_path / "faults" / "clickhouse.json"
    assert read_fault(path) is None and read_fault(None) is None
    assert with_fault(path, lambda: 7) == 7


def test_a_file_that_is_not_a_fault_object_is_ignored(tmp_path: Path) -> None:
    path = fault_file(tmp_path, "clickhouse")
    for body in ("[1, 2]", "{not json", '{"slowdown": "fast"}'):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        assert read_fault(path) is None, body


def test_slowdown_multiplies_the_write_time_and_adds_the_delay(tmp_path: Path) -> None:
    path = _write(fault_file(tmp_path, "clickhouse"), {"slowdown": 4, "delay_ms": 30})
    assert read_fault(path) == WriteFault(slowdown=4.0, delay_ms=30.0, fail=False)

    def write() -> str:
        time.sleep(0.02)
        return "done"

    t0 = time.monotonic()
    assert with_fault(path, write) == "done"
    assert time.monotonic() - t0 >= 0.08 + 0.03


def test_fail_raises_before_writing_and_sinks_retry_it(tmp_path: Path) -> None:
    path = _write(fault_file(tmp_path, "clickhouse"), {"fail": True})
    wrote: list[int] = []
    with pytest.raises(InjectedFault):
        with_fault(path, lambda: wrote.append(1))
    assert not wrote
    sink = ClickHouseSink("chdb:///nonexistent", "like_events_raw", event_row, fault_file=path)
    with pytest.raises(InjectedFault):
        sink.write("chdb:///nonexistent", [])
    assert sink.is_transient(InjectedFault("x"))
    assert is_transient("http://127.0.0.1:8123", InjectedFault("x"))
    path.unlink()
    assert read_fault(path) is None


def test_hang_blocks_the_write_until_the_file_says_otherwise(tmp_path: Path) -> None:
    path = _write(fault_file(tmp_path, "clickhouse"), {"hang": True})
    assert read_fault(path) == WriteFault(hang=True)
    wrote: list[float] = []
    writer = threading.Thread(target=with_fault, args=(path, lambda: wrote.append(1.0)))
    writer.start()
    time.sleep(1.0)
    assert writer.is_alive() and not wrote, "the write went through while the file said hang"
    path.unlink()
    writer.join(timeout=2.0)
    assert not writer.is_alive() and wrote == [1.0]
