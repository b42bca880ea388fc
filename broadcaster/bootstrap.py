"""The composition root: settings -> engine -> sessions. The CLI, the web app and tests start here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broadcaster.db import create_engine, session_factory
from broadcaster.schema import ensure_current, upgrade
from broadcaster.settings import Settings
from broadcaster.tiers import seed_default_tiers


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
    async def initialise(cls, settings: Settings) -> tuple[App, str | None, str | None]:
        """Create or upgrade the schema in place and seed the default tier schema on a new database."""
        app = await cls.open(settings, check_schema=False)
        try:
            before, after = await upgrade(app.engine)
            async with app.transaction() as session:
                await seed_default_tiers(session)
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
