"""HTTP load against the API: ``wrk`` (closed loop, saturating) and an open-loop generator.

``wrk`` is C and cheap on 2 cores; it picks a random registered post (or the hot post with
a given share) and a random pre-issued JWT per request. The open-loop generator (asyncio
over raw keep-alive HTTP/1.1 connections, uvloop if present) sends at a fixed rate and
measures latency from each request's *scheduled* time, so a stall is not hidden
(no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import log

_LUA = r"""
local tokfile = "%(tokfile)s"
local postfile = "%(postfile)s"
local hot = "%(hot)s"
local hot_share = %(hot_share)f
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
  return wrk.format("POST", "/v1/posts/" .. post .. "/like",
                    {["Authorization"] = "Bearer " .. tok}, "")
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "connect_err": %%d, ' ..
    '"read_err": %%d, "write_err": %%d, "timeout": %%d, "lat_mean_us": %%f, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "p999_us": %%d, "max_us": %%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
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


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rate: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    raw: dict[str, Any] = field(default_factory=dict)


class WrkLoad:
    """A wrk script over fixed token and post files."""

    def __init__(
        self, tokens: list[str], posts: list[int], hot: int | None = None, hot_share: float = 0.0
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
        (self.dir / "tokens.txt").write_text("\n".join(tokens) + "\n")
        (self.dir / "posts.txt").write_text("\n".join(str(p) for p in posts) + "\n")
        self.hot, self.hot_share = hot, hot_share

    def script(self, hot_share: float | None = None) -> Path:
        share = self.hot_share if hot_share is None else hot_share
        path = self.dir / f"like_{int(share * 1000)}.lua"
        path.write_text(
            _LUA
            % {
                "tokfile": self.dir / "tokens.txt",
                "postfile": self.dir / "posts.txt",
                "hot": str(self.hot or ""),
                "hot_share": share if self.hot else 0.0,
                "seed": random.randrange(10**6),
            }
        )
        return path

    def run(
        self,
        url: str,
        *,
        connections: int,
        seconds: float,
        threads: int = 2,
        hot_share: float | None = None,
    ) -> WrkResult:
        wrk = ensure_wrk()
        if wrk is None:
            raise RuntimeError("wrk is not available and could not be installed")
        threads = max(1, min(threads, connections))
        cmd = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(self.script(hot_share)),
            url,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        d = json.loads(line.removeprefix("WRKJSON "))
        secs = d["duration_us"] / 1e6
        return WrkResult(
            requests=d["requests"],
            seconds=secs,
            rate=d["requests"] / secs,
            non2xx=d["non2xx"],
            socket_errors=d["connect_err"] + d["read_err"] + d["write_err"] + d["timeout"],
            p50_ms=d["p50_us"] / 1000,
            p90_ms=d["p90_us"] / 1000,
            p99_ms=d["p99_us"] / 1000,
            p999_ms=d["p999_us"] / 1000,
            mean_ms=d["lat_mean_us"] / 1000,
            raw=d,
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------- open loop


@dataclass
class OpenLoopResult:
    target_rate: float
    sent: int
    seconds: float
    latencies_ms: list[float]  # from the scheduled send time, 2xx only
    statuses: dict[int, int]
    errors: int
    max_send_lag_ms: float
    p99_send_lag_ms: float

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class RawHttp:
    """Keep-alive HTTP/1.1 connections to one host, for small requests."""

    def __init__(self, base_url: str, max_conns: int = 512) -> None:
        u = urlsplit(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.hostport = f"{self.host}:{self.port}"
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.max_conns = max_conns
        self._cond = asyncio.Condition()

    async def _get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        if self.open < self.max_conns:
            self.open += 1
            try:
                return await asyncio.open_connection(self.host, self.port)
            except BaseException:
                self.open -= 1
                raise
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self.idle))
            return self.idle.pop()

    async def _put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is None:
            self.open -= 1
        else:
            self.idle.append(conn)
        async with self._cond:
            self._cond.notify()

    async def request(self, method: str, path: str, token: str) -> tuple[int, bytes]:
        conn = await self._get()
        reader, writer = conn
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: {self.hostport}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            body = await reader.readexactly(length) if length else b""
            if b"connection: close" in head.lower():
                writer.close()
                await self._put(None)
            else:
                await self._put(conn)
            return status, body
        except BaseException:
            writer.close()
            await self._put(None)
            raise

    async def close(self) -> None:
        for _, w in self.idle:
            w.close()
        self.idle.clear()


def pick_request_factory(
    posts: list[int],
    tokens: list[str],
    hot: int | None = None,
    hot_share: float = 0.0,
    seed: int | None = None,
) -> Any:
    rng = random.Random(seed)

    def make() -> tuple[str, str]:
        post = hot if hot is not None and rng.random() < hot_share else rng.choice(posts)
        return f"/v1/posts/{post}/like", rng.choice(tokens)

    return make


async def open_loop(
    base_url: str, rate: float, seconds: float, make: Any, max_conns: int = 512
) -> OpenLoopResult:
    """Send ``rate`` like requests per second for ``seconds``, on schedule."""
    http = RawHttp(base_url, max_conns)
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    lags: list[float] = []
    n = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()

    async def one(t_sched: float, path: str, token: str) -> None:
        nonlocal errors
        try:
            status, _ = await http.request("POST", path, token)
        except Exception:
            errors += 1
            return
        statuses[status] = statuses.get(status, 0) + 1
        if 200 <= status < 300:
            lat.append((loop.time() - t_sched) * 1000)

    t0 = loop.time() + 0.05
    for i in range(n):
        t_sched = t0 + i / rate
        delay = t_sched - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, loop.time() - t_sched) * 1000)
        path, token = make()
        task = asyncio.create_task(one(t_sched, path, token))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_end = loop.time()
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    await http.close()
    lags.sort()
    return OpenLoopResult(
        target_rate=rate,
        sent=n,
        seconds=sent_end - t0,
        latencies_ms=lat,
        statuses=statuses,
        errors=errors,
        max_send_lag_ms=lags[-1] if lags else 0.0,
        p99_send_lag_ms=lags[int(len(lags) * 0.99)] if lags else 0.0,
    )


def run_async(coro: Any) -> Any:
    """Run ``coro`` on uvloop when available (cheaper per request), else asyncio."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def now() -> float:
    return time.perf_counter()
