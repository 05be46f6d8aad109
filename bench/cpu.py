"""Per-process CPU accounting from ``/proc``: who used the machine's cores during a phase.

A process counts for the local-stack component whose process (``devstack.stack.running``:
the PID files) it is or descends from, e.g. a Postgres backend for ``postgres``; for
``wrk`` or ``pgbench`` by name; for a category the caller names (``extra``: the load
generator's client processes); for ``bench`` if it descends from this benchmark process;
else for ``other`` (someone else's load on the shared machine). Components are counted
per member (``kafka-0``, ``api-1`` in the cluster profile); :func:`by_component` adds
up the members of each component.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from core.settings import CommonSettings
from core.topology import component_of
from devstack import stack

_CLK_TCK = os.sysconf("SC_CLK_TCK")
TOOLS = ("wrk", "pgbench")
MACHINE_BUSY = "_machine_busy"
MACHINE_TOTAL = "_machine_total"


@dataclass(frozen=True)
class _Proc:
    ppid: int
    comm: str
    start: int  # start time in clock ticks: (pid, start) names a process uniquely
    own_s: float
    reaped_s: float  # CPU of its children that exited and were waited for


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far, per process ``(pid, start)``: ``(category, seconds)``."""

    procs: dict[tuple[int, int], tuple[str, float]]
    machine: tuple[float, float] | None  # (busy, total) CPU seconds of the whole machine
    reaped_by_us_s: float  # this process's children that ran to completion (wrk, pgbench)
    wall: float


def _read(pid: int) -> _Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    f = stat[stat.rindex(")") + 2 :].split()
    own = (int(f[11]) + int(f[12])) / _CLK_TCK
    reaped = (int(f[13]) + int(f[14])) / _CLK_TCK
    return _Proc(int(f[1]), comm, int(f[19]), own, reaped)


def _all_procs() -> dict[int, _Proc]:
    procs = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (p := _read(int(entry.name))) is not None:
            procs[int(entry.name)] = p
    return procs


def _category(pid: int, procs: dict[int, _Proc], roots: dict[int, str]) -> str:
    if procs[pid].comm in TOOLS:
        return procs[pid].comm
    me = os.getpid()
    for _ in range(64):  # walk up the parents
        if pid in roots:
            return roots[pid]
        if pid == me:
            return "bench"
        if pid not in procs:
            break
        pid = procs[pid].ppid
    return "other"


def _machine() -> tuple[float, float] | None:
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    vals = [int(x) / _CLK_TCK for x in parts]
    return sum(vals) - vals[3] - vals[4], sum(vals)  # idle and iowait are not busy


def cpu_snapshot(extra: dict[int, str] | None = None) -> CpuSnapshot:
    """CPU seconds used so far by every process, with its category; ``extra`` names the
    category of further processes (and their descendants) by PID."""
    roots = {pid: name for name, pid in stack.running(CommonSettings()).items() if pid}
    roots.update(extra or {})
    procs = _all_procs()
    out: dict[tuple[int, int], tuple[str, float]] = {}
    for pid, p in procs.items():
        # a component's exited children (Postgres backends) count for the component
        used = p.own_s + (p.reaped_s if pid in roots else 0.0)
        out[(pid, p.start)] = (_category(pid, procs, roots), used)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(out, _machine(), ru.ru_utime + ru.ru_stime, time.time())


def cpu_delta(a: CpuSnapshot, b: CpuSnapshot, tool: str | None = None) -> dict[str, float]:
    """CPU seconds per category between two snapshots.

    Processes alive in both count their difference, processes started in between count
    in full. ``tool``: the name under which this process's children that ran to
    completion in between (wrk, pgbench) are counted.
    """
    out: dict[str, float] = {}
    for key, (cat, used) in b.procs.items():
        before = a.procs.get(key)
        out[cat] = out.get(cat, 0.0) + used - (before[1] if before else 0.0)
    if tool:
        out[tool] = out.get(tool, 0.0) + b.reaped_by_us_s - a.reaped_by_us_s
    if a.machine and b.machine:
        out[MACHINE_BUSY] = b.machine[0] - a.machine[0]
        out[MACHINE_TOTAL] = b.machine[1] - a.machine[1]
    return {k: round(v, 3) for k, v in sorted(out.items())}


def busy_share(delta: dict[str, float]) -> float:
    """The share of the machine's CPU time that was busy, from a :func:`cpu_delta`."""
    return delta.get(MACHINE_BUSY, 0.0) / max(delta.get(MACHINE_TOTAL, 0.0), 1e-9)


def cpu_per_op(delta: dict[str, float], ops: float, floor: float = 0.01) -> dict[str, float]:
    """Microseconds of CPU per operation, per category (those above ``floor`` of the
    machine's busy time only)."""
    if not ops:
        return {}
    total = max(delta.get(MACHINE_BUSY, 0.0), 1e-9)
    return {
        k: round(v / ops * 1e6, 1)
        for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
        if not k.startswith("_") and v / total > floor
    }


def by_component(delta: dict[str, float]) -> dict[str, float]:
    """A :func:`cpu_delta` with the members of each component added up (``kafka-0..2``
    as ``kafka``); other categories as they are."""
    out: dict[str, float] = {}
    for k, v in delta.items():
        kind = k if k.startswith("_") else component_of(k)
        out[kind] = round(out.get(kind, 0.0) + v, 3)
    return out


def cores(delta: dict[str, float], wall_s: float, floor: float) -> dict[str, float]:
    """Cores used per category over ``wall_s`` seconds, those at ``floor`` or above."""
    wall = max(wall_s, 1e-9)
    return {
        k: round(v / wall, 2)
        for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
        if not k.startswith("_") and v / wall >= floor
    }


@dataclass(frozen=True)
class Background:
    """What the machine was busy with before a benchmark started."""

    machine_busy: float
    cores: dict[str, float]


def background(seconds: float = 1.0) -> Background:
    """Measure the machine's load over ``seconds`` (cores per category)."""
    a = cpu_snapshot()
    time.sleep(seconds)
    b = cpu_snapshot()
    d = cpu_delta(a, b)
    return Background(round(busy_share(d), 2), cores(d, b.wall - a.wall, 0.03))
