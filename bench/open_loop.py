"""Open-loop like load: a fixed request rate, latency from each request's *scheduled* time.

So a stall is not hidden (no coordinated omission). Requests go over raw keep-alive
HTTP/1.1 connections (cheaper than an HTTP client library on 2 cores), on uvloop if
present.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from bench.fixtures import like_path
from bench.stats import pct

T = TypeVar("T")
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
MakeRequest = Callable[[], tuple[str, str, str]]  # -> (method, path, token)


class RawHttp:
    """Keep-alive HTTP/1.1 connections to one host, for small requests."""

    def __init__(self, base_url: str, max_conns: int = 512) -> None:
        u = urlsplit(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.hostport = f"{self.host}:{self.port}"
        self.idle: list[Conn] = []
        self.open = 0
        self.max_conns = max_conns
        self._cond = asyncio.Condition()

    async def _get(self) -> Conn:
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

    async def _put(self, conn: Conn | None) -> None:
        if conn is None:
            self.open -= 1
        else:
            self.idle.append(conn)
        async with self._cond:
            self._cond.notify()

    async def _exchange(self, conn: Conn, method: str, path: str, token: str) -> tuple[int, bytes]:
        reader, writer = conn
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {self.hostport}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
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
        return int(head[9:12]), body

    async def request(self, method: str, path: str, token: str) -> tuple[int, bytes]:
        """``(status, body)`` of one request."""
        conn = await self._get()
        try:
            return await self._exchange(conn, method, path, token)
        except BaseException:
            conn[1].close()
            await self._put(None)
            raise

    async def close(self) -> None:
        """Close the idle connections."""
        for _, w in self.idle:
            w.close()
        self.idle.clear()


def like_requests(posts: list[int], tokens: list[str], seed: int | None = None) -> MakeRequest:
    """A random post and a random user's token per like."""
    rng = random.Random(seed)
    return lambda: ("POST", like_path(rng.choice(posts)), rng.choice(tokens))


@dataclass
class OpenLoopResult:
    """What an open-loop run measured."""

    target_rate: float
    sent: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # from the schedule, 2xx only
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    send_lags_ms: list[float] = field(default_factory=list)  # the generator's own lateness

    @property
    def achieved_rate(self) -> float:
        """Requests sent per second."""
        return self.sent / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float | None:
        """The ``q``-th percentile latency (ms)."""
        return pct(self.latencies_ms, q)


async def _one(
    http: RawHttp, res: OpenLoopResult, t_sched: float, method: str, path: str, token: str
) -> None:
    loop = asyncio.get_running_loop()
    try:
        status, _ = await http.request(method, path, token)
    except Exception:
        res.errors += 1
        return
    res.statuses[status] = res.statuses.get(status, 0) + 1
    if 200 <= status < 300:
        res.latencies_ms.append((loop.time() - t_sched) * 1000)


async def open_loop(
    base_url: str, rate: float, seconds: float, make: MakeRequest, max_conns: int = 512
) -> OpenLoopResult:
    """Send ``rate`` requests per second (``make``'s) for ``seconds``, on schedule."""
    http = RawHttp(base_url, max_conns)
    loop = asyncio.get_running_loop()
    res = OpenLoopResult(rate, sent=int(rate * seconds))
    tasks: set[asyncio.Task[None]] = set()
    t0 = loop.time() + 0.05
    for i in range(res.sent):
        t_sched = t0 + i / rate
        delay = t_sched - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        res.send_lags_ms.append(max(0.0, loop.time() - t_sched) * 1000)
        task = asyncio.create_task(_one(http, res, t_sched, *make()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    res.seconds = loop.time() - t0
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    await http.close()
    return res


def run_async(coro: Awaitable[T]) -> T:
    """Run ``coro`` on uvloop when available (cheaper per request), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_wrap(coro))
    return uvloop.run(_wrap(coro))


async def _wrap(aw: Awaitable[T]) -> T:
    return await aw
