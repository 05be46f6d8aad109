"""The API under cProfile: where its CPU time goes (diagnostic only).

``python -m bench.api_profile PORT OUT`` serves the API's own app factory
(``ingest_api.app:create_app``, settings from the same ``LIKES_*`` environment) on
another port, profiles only the serving phase, and on SIGUSR1 dumps the profile to
``OUT`` and exits. :func:`profile_api` drives it with the benchmark's wrk load.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from bench.children import Child, free_port
from bench.profile_stats import by_place, self_times, shares
from bench.wrk import WrkLoad

APP = "ingest_api.app:create_app"


class _ProfiledServer(uvicorn.Server):
    """Profiles from the end of start-up (imports and start-up are not the hot path)."""

    def __init__(self, config: uvicorn.Config, prof: cProfile.Profile) -> None:
        super().__init__(config)
        self.prof = prof

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.prof.enable()


def main() -> None:
    """Serve until SIGUSR1, then dump the profile and exit."""
    port, out = int(sys.argv[1]), sys.argv[2]
    prof = cProfile.Profile()

    def dump(_sig: int, _frame: object) -> None:
        prof.disable()
        prof.dump_stats(out)
        os._exit(0)

    signal.signal(signal.SIGUSR1, dump)
    config = uvicorn.Config(
        APP, factory=True, host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    _ProfiledServer(config, prof).run()


@dataclass(frozen=True)
class ApiProfile:
    """Self time by place, and the hottest functions per request."""

    profiled_busy_s: float
    loop_idle_s: float
    requests: int
    rate_under_profiler: float
    share_by_package: dict[str, float]
    top_functions_us_per_request: list[tuple[str, float]]


def summarize(path: Path, requests: int, rate: float, top: int = 12) -> ApiProfile:
    """Self time grouped by place, and the hottest functions, per request."""
    times = self_times(pstats.Stats(str(path)))
    # the event loop's own C code, mostly waiting in epoll, is idle time, not work
    idle_keys = [f for f in times if f[0].endswith("asyncio/runners.py") and f[2] == "run"]
    idle = sum(times.pop(f) for f in idle_keys)
    hottest = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    return ApiProfile(
        profiled_busy_s=round(sum(times.values()), 3),
        loop_idle_s=round(idle, 3),
        requests=requests,
        rate_under_profiler=round(rate, 1),
        share_by_package=shares(by_place(times), top),
        top_functions_us_per_request=[
            (
                f"{fname.rsplit('site-packages/', 1)[-1]}:{line}({name})",
                round(t / requests * 1e6, 1),
            )
            for (fname, line, name), t in hottest
        ]
        if requests
        else [],
    )


def _wait_ready(url: str, kid: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and kid.proc.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("profiled API did not start: " + kid.log_tail())


def profile_api(wrk: WrkLoad, connections: int, seconds: float) -> ApiProfile:
    """Run a bench-owned API instance under cProfile with the same wrk load."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-prof-"))
    out = tmp / "api.prof"
    kid = Child(["bench.api_profile", str(port), str(out)], tmp / "api.log")
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, kid)
        w = wrk.run(url, connections=connections, seconds=seconds)
        os.kill(kid.proc.pid, signal.SIGUSR1)
        kid.proc.wait(timeout=30)
        return summarize(out, w.requests, w.rate)
    finally:
        kid.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
