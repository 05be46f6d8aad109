"""Bench-only entry: the counts flow over a pre-filled topic, ending at its end.

``python -m bench.flow_entry --mode full|redis [--process-id I --addresses A]`` builds
the production flow (:func:`bench.flow_build.bench_flow`) from ``FlowSettings()`` (the
parent passes the topic and its isolated stores as ``LIKES_*`` variables) and runs it
the way ``likes flow counts`` does: ``bytewax.run.cli_main``, one worker per process,
recovery snapshots every ``snapshot_interval_s``, optionally several processes. Prints
``BENCH {"event": "ready"}`` when start-up is done and ``BENCH {"event": "end"}`` with
the process's CPU seconds in between.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import timedelta

from bytewax.run import cli_main

from bench.children import emit
from bench.flow_build import MODES, bench_flow
from core.settings import FlowSettings
from flows.runner import ensure_recovery


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    """Run the flow to the end of the topic."""
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=MODES, default="full")
    p.add_argument("--process-id", type=int)
    p.add_argument("--addresses", help="host:port of every process, ';'-separated")
    a = p.parse_args()
    s = FlowSettings()
    if a.process_id is not None and a.addresses:  # one worker per process, as flows.runner
        s = s.model_copy(update={"reader": (a.process_id, len(a.addresses.split(";")))})
    flow = bench_flow(s, a.mode)
    recovery = ensure_recovery(s, "counts")
    ready, cpu0 = time.time(), _cpu()
    emit("ready", t=ready)
    cli_main(  # type: ignore[no-untyped-call]  # bytewax's stub leaves cli_main untyped
        flow,
        workers_per_process=1,
        process_id=a.process_id,
        addresses=a.addresses.split(";") if a.addresses else None,
        epoch_interval=timedelta(seconds=s.snapshot_interval_s),
        recovery_config=recovery,
    )
    emit("end", t=time.time(), ready=ready, cpu_s=round(_cpu() - cpu0, 3))


if __name__ == "__main__":
    main()
