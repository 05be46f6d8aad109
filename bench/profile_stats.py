"""cProfile self time grouped by where the code lives: package, project module, stdlib, builtin.

cProfile inflates pure-Python call overhead, so read the shares, not the absolute times.
"""

from __future__ import annotations

import pstats
import re

from core.settings import REPO_ROOT

_ROOT = f"{REPO_ROOT}/"
_STDLIB = "python3.11/"
Func = tuple[str, int, str]  # (file, line, function), as pstats keys them


def builtin_name(name: str) -> str:
    """``<method 'consume' of 'cimpl.Consumer' objects>`` -> ``cimpl.Consumer.consume``."""
    m = re.match(r"<method '(\w+)' of '([\w.]+)' objects>", name)
    if m:
        return f"{m.group(2)}.{m.group(1)}"
    m = re.match(r"<built-in method ([\w.]+)>", name)
    if m:
        return m.group(1)
    return name[:60]


def place(fname: str, name: str) -> str:
    """Where a profiled function lives, as a grouping key."""
    if "site-packages/" in fname:
        return fname.split("site-packages/")[1].split("/")[0]
    if fname.startswith(_ROOT + "bench/"):
        return "bench"
    if fname.startswith(_ROOT):
        return "project:" + fname.removeprefix(_ROOT)
    if _STDLIB in fname:
        return "stdlib:" + fname.split(_STDLIB)[1].split("/")[0]
    if fname == "~":
        return builtin_name(name)
    return fname


def self_times(st: pstats.Stats) -> dict[Func, float]:
    """Self (total internal) time per function."""
    return {func: row[2] for func, row in st.stats.items()}  # type: ignore[attr-defined]  # typeshed omits Stats.stats


def by_place(times: dict[Func, float]) -> dict[str, float]:
    """Self time summed per :func:`place`."""
    out: dict[str, float] = {}
    for (fname, _line, name), t in times.items():
        key = place(fname, name)
        out[key] = out.get(key, 0.0) + t
    return out


def shares(by: dict[str, float], top: int) -> dict[str, float]:
    """The ``top`` places and their share of the total, largest first."""
    total = sum(by.values()) or 1.0
    ranked = sorted(by.items(), key=lambda kv: -kv[1])[:top]
    return {k: round(v / total, 3) for k, v in ranked}
