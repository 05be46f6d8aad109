"""Run each flow test with one worker and with two (keying bugs show up with two)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

Runner = Callable[..., None]


def _two_workers(flow: Dataflow, **kw: Any) -> None:
    cluster_main(flow, [], 0, worker_count_per_proc=2, **kw)


@pytest.fixture(params=["one_worker", "two_workers"])
def entry_point(request: pytest.FixtureRequest) -> Runner:
    """``run_main`` or a two-worker ``cluster_main``, with a short epoch."""
    runner = run_main if request.param == "one_worker" else _two_workers

    def run(flow: Dataflow, **kw: Any) -> None:
        kw.setdefault("epoch_interval", timedelta(milliseconds=20))
        runner(flow, **kw)

    return run
