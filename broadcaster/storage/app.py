"""The App: settings -> engine -> sessions, and one transaction helper. Every service takes an App or a
session from here; what is wired on top of it (adapters, dispatcher, web app) lives in bootstrap.

A transaction that fails because the database did not answer raises :class:`DatabaseUnavailable`
(naming the database), whatever the driver said; see :func:`broadcaster.storage.db.as_unavailable`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broadcaster.domain.errors import DatabaseUnavailable, StorageError
from broadcaster.domain.settings import Settings
from broadcaster.storage.db import (
    COMMAND_TIMEOUT,
    as_unavailable,
    create_engine,
    session_factory,
)
from broadcaster.storage.schema import ensure_current, upgrade


@dataclass(slots=True)
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    async def open(
        cls, settings: Settings, *, check_schema: bool = True, command_timeout: float | None = COMMAND_TIMEOUT
    ) -> App:
        engine = create_engine(settings.database_url, command_timeout=command_timeout)
        app = cls(settings, engine, session_factory(engine))
        if check_schema:
            try:
                await ensure_current(engine)
            except BaseException as exc:
                await engine.dispose()
                unavailable = app._naming_database(exc)
                if unavailable is None:
                    raise
                raise unavailable from exc
        return app

    @classmethod
    async def initialise(
        cls, settings: Settings, seed: Callable[[AsyncSession], Awaitable[object]] | None = None
    ) -> tuple[App, str | None, str | None]:
        """Create or upgrade the schema in place, then run ``seed`` in one transaction (bootstrap passes
        the default tier schema's seeding: storage knows no units)."""
        # Migrations may rewrite large tables: no statement timeout.
        app = await cls.open(settings, check_schema=False, command_timeout=None)
        try:
            before, after = await upgrade(app.engine)
            if seed is not None:
                async with app.transaction() as session:
                    await seed(session)
        except BaseException as exc:
            await app.close()
            unavailable = app._naming_database(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        return app, before, after

    def with_settings(self, **changes: object) -> App:
        return replace(self, settings=replace(self.settings, **changes))  # type: ignore[arg-type]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error; an error
        saying the database did not answer is raised as :class:`DatabaseUnavailable`."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            unavailable = self.unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable | None:
        """``exc`` as :class:`DatabaseUnavailable` if it says this app's database did not answer."""
        return as_unavailable(exc, self.settings.database_url)

    def _naming_database(self, exc: BaseException) -> DatabaseUnavailable | None:
        """The error opening or initialising the database as :class:`DatabaseUnavailable` naming it
        ("cannot open the database 10.0.0.5:5432/cns: Connect call failed"), when it is one."""
        if isinstance(exc, DatabaseUnavailable) or not isinstance(exc, StorageError):
            return None if isinstance(exc, DatabaseUnavailable) else self.unavailable(exc)
        unavailable = None if exc.__cause__ is None else self.unavailable(exc.__cause__)
        if unavailable is None:
            return None
        doing = str(exc).split(":")[0]  # "cannot open the database", "cannot initialise the database"
        message = f"{doing} {unavailable.where}: {unavailable.reason}"
        return DatabaseUnavailable(unavailable.where, unavailable.reason, message)

    async def close(self) -> None:
        await self.engine.dispose()
