"""``wrk`` closed-loop load against the like route: the API's maximum rate.

``wrk`` is C and cheap on 2 cores; its Lua script picks a random registered post (or the
hot post with a given share) and a random pre-issued JWT per request, and prints one
``WRKJSON {...}`` line with the counts and latency percentiles.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.fixtures import LIKE_ROUTE
from bench.log import log

_LUA = r"""
local tokfile = "%(tokfile)s"
local postfile = "%(postfile)s"
local hot = "%(hot)s"
local hot_share = %(hot_share)f
local path_head, path_tail = "%(path_head)s", "%(path_tail)s"
local tokens, posts = {}, {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

function init(args)
  for line in io.lines(tokfile) do tokens[#tokens + 1] = line end
  for line in io.lines(postfile) do posts[#posts + 1] = line end
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + %(seed)d)
  for i = 1, 10 do math.random() end
end

function request()
  local post
  if hot_share > 0 and math.random() < hot_share then
    post = hot
  else
    post = posts[math.random(1, #posts)]
  end
  local tok = tokens[math.random(1, #tokens)]
  return wrk.format("POST", path_head .. post .. path_tail,
                    {["Authorization"] = "Bearer " .. tok}, "")
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "connect_err": %%d, ' ..
    '"read_err": %%d, "write_err": %%d, "timeout": %%d, "lat_mean_us": %%f, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def ensure_wrk() -> str | None:
    """``wrk`` on PATH, installing the Debian package if missing; None if impossible."""
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk missing: installing the Debian package")
    for cmd in (
        ["apt-get", "install", "-y", "-q", "wrk"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "wrk"],
    ):
        subprocess.run(cmd, capture_output=True, check=False, timeout=300)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    rate: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


def _parse(stdout: str, stderr: str) -> WrkResult:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {stdout[-2000:]} {stderr[-2000:]}")
    d = json.loads(line.removeprefix("WRKJSON "))
    secs = d["duration_us"] / 1e6
    return WrkResult(
        requests=int(d["requests"]),
        seconds=secs,
        rate=d["requests"] / secs,
        non2xx=int(d["non2xx"]),
        socket_errors=int(d["connect_err"] + d["read_err"] + d["write_err"] + d["timeout"]),
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        mean_ms=d["lat_mean_us"] / 1000,
    )


class WrkLoad:
    """A wrk script over fixed token and post files."""

    def __init__(self, tokens: list[str], posts: list[int], hot: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
        (self.dir / "tokens.txt").write_text("\n".join(tokens) + "\n")
        (self.dir / "posts.txt").write_text("\n".join(str(p) for p in posts) + "\n")
        self.hot = hot

    def script(self, hot_share: float) -> Path:
        """The Lua script sending ``hot_share`` of the likes to the hot post."""
        head, _, tail = LIKE_ROUTE.partition("{post_id}")
        path = self.dir / f"like_{int(hot_share * 1000)}.lua"
        values: dict[str, object] = {
            "tokfile": self.dir / "tokens.txt",
            "postfile": self.dir / "posts.txt",
            "hot": str(self.hot or ""),
            "hot_share": hot_share if self.hot else 0.0,
            "path_head": head,
            "path_tail": tail,
            "seed": random.randrange(10**6),
        }
        path.write_text(_LUA % values)
        return path

    def run(
        self, url: str, *, connections: int, seconds: float, hot_share: float = 0.0
    ) -> WrkResult:
        """``seconds`` of load over ``connections`` keep-alive connections, 2 threads."""
        wrk = ensure_wrk()
        if wrk is None:
            raise RuntimeError("wrk is not available and could not be installed")
        threads = max(1, min(2, connections))
        script = str(self.script(hot_share))
        cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        cmd += ["--timeout", "10s", "-s", script, url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        return _parse(done.stdout, done.stderr)

    def cleanup(self) -> None:
        """Remove the token and post files."""
        shutil.rmtree(self.dir, ignore_errors=True)
