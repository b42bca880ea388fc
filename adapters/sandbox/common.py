"""Shared parts of the sandbox platforms: fault injection, rate windows, and running a server.

Faults are seeded so a test or a benchmark sees the same sequence every run. They apply before the
platform logic, the way a flaky network or an overloaded gateway would: latency, no answer at all
(the client times out), a dropped connection, a 5xx answer, or a burst of consecutive 5xx answers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class FaultConfig:
    """What can go wrong, per request. Rates are probabilities in [0, 1]."""

    seed: int = 0
    error_rate: float = 0.0  # answer 5xx
    latency: float = 0.0  # seconds added to every answer
    timeout_rate: float = 0.0  # never answer (hold the request ``hang`` seconds)
    drop_rate: float = 0.0  # close the connection without an answer
    malformed_rate: float = 0.0  # answer 200 with a body that is not what the API returns (a proxy page)
    burst_every: int = 0  # every Nth request starts a burst of ``burst_length`` 5xx answers
    burst_length: int = 0
    hang: float = 30.0
    paths: tuple[str, ...] = ()  # only requests whose path contains one of these (empty: all)
    limit: int = 0  # inject at most this many faults, then answer normally (0: no limit)


@dataclass(slots=True)
class Faults:
    config: FaultConfig = field(default_factory=FaultConfig)
    _rng: random.Random = field(init=False)
    _count: int = 0
    _burst_left: int = 0
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._count = self._burst_left = 0
        self.injected = {}

    def _note(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def _pick(self) -> str | None:
        cfg = self.config
        if cfg.burst_every and self._count % cfg.burst_every == 0:
            self._burst_left = cfg.burst_length
        if self._burst_left > 0:
            self._burst_left -= 1
            return "burst"
        roll = self._rng.random()
        for kind, rate in (
            ("timeout", cfg.timeout_rate),
            ("drop", cfg.drop_rate),
            ("malformed", cfg.malformed_rate),
            ("error", cfg.error_rate),
        ):
            if roll < rate:
                return kind
            roll -= rate
        return None

    async def apply(self, request: web.Request) -> web.StreamResponse | None:
        """Return a faulty response (or raise to drop the connection), or None to proceed normally."""
        cfg = self.config
        if request.path.startswith("/__sim") or (cfg.paths and not any(p in request.path for p in cfg.paths)):
            return None
        self._count += 1
        if cfg.latency:
            await asyncio.sleep(cfg.latency)
        kind = self._pick()
        if kind is None or (cfg.limit and sum(self.injected.values()) >= cfg.limit):
            return None
        self._note(kind)
        if kind == "timeout":
            await asyncio.sleep(cfg.hang)
            return web.Response(status=504, text="Gateway Timeout")
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("sandbox dropped the connection")
        if kind == "malformed":
            return web.Response(
                status=200, text="<html><body>Captive portal</body></html>", content_type="text/html"
            )
        if kind == "burst":
            return web.Response(status=503, text="Service Unavailable")
        return web.Response(
            status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
        )


def fault_middleware(faults: Faults) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        faulty = await faults.apply(request)
        return faulty if faulty is not None else await handler(request)

    return middleware


class SlidingWindow:
    """At most ``limit`` events per ``period`` seconds; ``retry_after`` says when the next one fits."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.period, self.clock = limit, period, clock
        self.events: deque[float] = deque()

    def hit(self) -> float:
        """Record an event; return 0 if allowed, else the seconds until one would be."""
        now = self.clock()
        while self.events and now - self.events[0] >= self.period:
            self.events.popleft()
        if len(self.events) >= self.limit:
            return self.period - (now - self.events[0])
        self.events.append(now)
        return 0.0


class Running:
    """A sandbox app served on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, app: web.Application, port: int = 0) -> None:
        self.app, self.port = app, port
        self.runner = web.AppRunner(app, access_log=None)
        self.url = ""

    async def start(self) -> Running:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> Running:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Emitter:
    """Background deliveries of a sandbox's own webhooks (members' replies, reactions, events)."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        delays: Sequence[float],
        done: Callable[[int], bool] = lambda status: status == 200,
    ) -> int | None:
        """POST until ``done(status)``, waiting ``delays`` before each try (time-compressed retries)."""
        for delay in delays:
            await asyncio.sleep(delay)
            try:
                async with self.session.post(url, data=body, headers=dict(headers)) as response:
                    if done(response.status):
                        return response.status
            except (aiohttp.ClientError, TimeoutError):
                continue
        return None

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
