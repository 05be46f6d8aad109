"""``likes flows-reset``: the runbook for a lost or damaged recovery store, as one command.

Guarantee: afterwards every count projection is exact (contract section 8: Redis,
``post_like_counts``, ClickHouse windows) and stays exact with the next events, without
re-reading Kafka's retention, while the API keeps taking likes:

1. the flows are stopped (every member, in either profile);
2. the current end offsets of the topics they read are recorded in a new, empty
   recovery store per flow (:mod:`flows.start_offsets`), and as each flow's published
   progress (what it skips counts as passed, see ``ops.reconcile``); whatever was left
   of the old store is deleted;
3. the flows start from those offsets with empty state;
4. ``likes backfill`` (every projection) rebuilds what the flows did not see: all edges
   changed before it reads them, so everything before the recorded offsets too. Its
   flow-state records reach the counts flow after the recorded offsets (they are
   written later), so the flow adopts the truth for every post and what it writes from
   then on is exact; ClickHouse gets correction rows judged at a consistent point.

Events between the stop and the recorded offsets are not lost: the backfill covers them
(it reads the edge store, not Kafka). What stays approximate is what was always
approximate: trending scores within the bounds the edge store proves, hot-post episodes
in progress (detected again from new likes), notification rate limits.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from core.settings import CommonSettings, FlowSettings
from flows import progress, start_offsets
from ops import backfill
from ops.flow_status import end_offsets


class ResetError(RuntimeError):
    """The reset could not start, or could not finish (its cause says why)."""


@dataclass
class ResetReport:
    """What the reset did, and the backfill's report."""

    stopped: list[str] = field(default_factory=list)
    start_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    backfill: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


def _flow_members(s: CommonSettings) -> list[str]:
    from devstack.components import build_components

    return [c.name for c in build_components(s) if c.name.startswith("flow-")]


def reset(s: CommonSettings, *, show_progress: bool = True) -> ResetReport:
    """Run the runbook; the report says what was done."""
    from devstack import stack
    from devstack.supervisor import Supervisor
    from flows.runner import FLOWS

    t0 = time.monotonic()
    report = ResetReport()
    members = _flow_members(s)
    sup = Supervisor(s)
    if not sup.reachable():
        raise ResetError("the stack is not running (`make up` first)")
    for name in members:
        if sup.stop(name):
            report.stopped.append(name)
    topics = (s.events_topic, s.hot_episodes_topic)
    report.start_offsets = {t: end_offsets(s.kafka_bootstrap, t) for t in topics}
    fs = FlowSettings()
    for flow in FLOWS:
        store = fs.recovery_path(flow)
        shutil.rmtree(store, ignore_errors=True)
        start_offsets.write(store, report.start_offsets)
        progress.restart_at(s.redis_url, flow, report.start_offsets[s.events_topic])
    stack.up(s, only=members)
    report.started = members
    try:
        report.backfill = backfill.run(s, None, None, show_progress=show_progress).as_dict()
    except Exception as e:
        raise ResetError(
            f"the flows were reset and run from the end of their topics ({', '.join(members)}),"
            " but the backfill failed, so projections may still miss what the flows lost;"
            " finish the runbook with `likes backfill` once the cause above is fixed"
        ) from e
    report.seconds = round(time.monotonic() - t0, 3)
    return report
