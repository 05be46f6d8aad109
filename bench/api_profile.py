"""A bench-owned API instance under cProfile (``python -m bench.api_profile PORT OUT``).

Same code and settings as the live API, on another port; SIGUSR1 dumps the profile and
exits. Used only to say where the API's CPU time goes (cProfile inflates pure-Python
call overhead, so the shares, not the absolute times, are what to read).
"""

from __future__ import annotations

import collections
import cProfile
import os
import pstats
import signal
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    import uvicorn

    port, out = int(sys.argv[1]), sys.argv[2]
    prof = cProfile.Profile()

    def stop(*_: Any) -> None:
        prof.disable()
        prof.dump_stats(out)
        os._exit(0)

    signal.signal(signal.SIGUSR1, stop)
    config = uvicorn.Config(
        "ingest_api.app:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]

    def started() -> None:
        prof.enable()

    # profile only the serving phase, not imports and start-up
    orig_startup = server.startup

    async def startup(*a: Any, **kw: Any) -> None:
        await orig_startup(*a, **kw)
        started()

    server.startup = startup  # type: ignore[method-assign]
    server.run()


def summarize(path: Path, requests: int, top: int = 12) -> dict[str, Any]:
    """Self time grouped by package, and the hottest functions, per request."""
    st = pstats.Stats(str(path))
    by_pkg: collections.Counter[str] = collections.Counter()
    funcs: list[tuple[float, str]] = []
    idle = 0.0
    for (fname, line, name), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if fname.endswith("asyncio/runners.py") and name == "run":
            idle += tt  # the event loop's own C code, mostly waiting in epoll
            continue
        if "site-packages/" in fname:
            key = fname.split("site-packages/")[1].split("/")[0]
        elif "/work/main/" in fname or "/ingest_api/" in fname:
            key = "project:" + fname.rsplit("/", 2)[-2] + "/" + fname.rsplit("/", 1)[-1]
        elif "python3.11/" in fname:
            key = "stdlib:" + fname.split("python3.11/")[1].split("/")[0]
        elif fname == "~":
            from bench.flow_profile import builtin_name

            key = builtin_name(name)
        else:
            key = fname
        by_pkg[key] += tt
        funcs.append((tt, f"{fname.rsplit('site-packages/', 1)[-1]}:{line}({name})"))
    busy = sum(by_pkg.values())
    funcs.sort(reverse=True)
    return {
        "profiled_busy_s": round(busy, 3),
        "loop_idle_s": round(idle, 3),
        "requests": requests,
        "share_by_package": {k: round(v / busy, 3) for k, v in by_pkg.most_common(top)},
        "top_functions_us_per_request": [
            (f, round(t / max(requests, 1) * 1e6, 1)) for t, f in funcs[:top]
        ],
    }


if __name__ == "__main__":
    main()
