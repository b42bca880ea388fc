"""The App: settings -> engine -> sessions, and one transaction helper. Every service takes an App or a
session from here; what is wired on top of it (adapters, dispatcher, web app) lives in bootstrap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broadcaster.domain.settings import Settings
from broadcaster.storage.db import create_engine, session_factory
from broadcaster.storage.schema import ensure_current, upgrade


@dataclass(slots=True)
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    async def open(cls, settings: Settings, *, check_schema: bool = True) -> App:
        engine = create_engine(settings.database_url)
        app = cls(settings, engine, session_factory(engine))
        if check_schema:
            try:
                await ensure_current(engine)
            except BaseException:
                await engine.dispose()
                raise
        return app

    @classmethod
    async def initialise(
        cls, settings: Settings, seed: Callable[[AsyncSession], Awaitable[object]] | None = None
    ) -> tuple[App, str | None, str | None]:
        """Create or upgrade the schema in place, then run ``seed`` in one transaction (bootstrap passes
        the default tier schema's seeding: storage knows no units)."""
        app = await cls.open(settings, check_schema=False)
        try:
            before, after = await upgrade(app.engine)
            if seed is not None:
                async with app.transaction() as session:
                    await seed(session)
        except BaseException:
            await app.close()
            raise
        return app, before, after

    def with_settings(self, **changes: object) -> App:
        return replace(self, settings=replace(self.settings, **changes))  # type: ignore[arg-type]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
