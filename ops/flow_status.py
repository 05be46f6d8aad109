"""Lag of each dataflow: Kafka end offsets minus the offsets it has processed."""

from __future__ import annotations

from typing import Any

from ops.settings import CommonSettings


def flow_report(s: CommonSettings) -> dict[str, Any]:
    """Per-flow lag and last drift figures (empty until flows exist)."""
    return {"flows": {}, "drift": None}
