"""A TCP proxy between the app and PostgreSQL, for outage tests: it can be switched down (connections
refused, open ones cut), stalled (connections accepted, nothing answered) and up again."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.engine import make_url


class DbProxy:
    def __init__(self, database_url: str) -> None:
        target = make_url(database_url)
        self.database_url = database_url
        self.upstream = (target.host or "127.0.0.1", target.port or 5432)
        self.port = 0
        self.connections = 0  # accepted so far
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()  # cleared: stalled
        self._flowing.set()
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The database URL through the proxy."""
        return (
            make_url(self.database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    async def start(self) -> DbProxy:
        await self._listen()
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Refuse new connections (nothing listens) and cut the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut()

    def stall(self) -> None:
        """Accept connections, forward nothing: the server seems alive and never answers."""
        self._flowing.clear()

    async def up(self) -> None:
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        await self.down()
        self._flowing.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _cut(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()
            up_reader, upstream = await asyncio.open_connection(*self.upstream)
            self._open.add(upstream)
            pumps = [
                asyncio.create_task(self._pump(reader, upstream)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            self._tasks.update(pumps)
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                    self._tasks.discard(pump)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for side in (writer, upstream):
                if side is not None:
                    self._open.discard(side)
                    side.transport.abort()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                await self._flowing.wait()  # stalled: hold what arrived, answer nothing
                sink.write(data)
                await sink.drain()
