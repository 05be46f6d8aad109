"""Small statistics for the reports: nearest-rank percentiles, ratios, number formatting."""

from __future__ import annotations

import math


def pct(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (nearest rank) of ``values``; None if there are none."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is unknown or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v: float | None, digits: int = 3) -> str:
    """A figure for a table cell: thousands separators from 100 up, else ``digits`` digits."""
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"
