"""Engines and sessions: SQLite by default (WAL, foreign keys, busy timeout), PostgreSQL via asyncpg."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from broadcaster.domain.errors import StorageError

SQLITE_BUSY_TIMEOUT_MS = 10_000


def async_url(url: str) -> URL:
    """Turn a user-facing URL (``sqlite:///cns.db``, ``postgresql://...``) into its async-driver form."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"invalid database URL {url!r}: expected sqlite:///PATH or postgresql://..."
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    raise StorageError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...")


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers (status, reports) run beside the dispatcher's writes; foreign keys are off by
    # default in SQLite; the busy timeout turns short write contention into waiting instead of errors.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create an async engine for ``url`` with the project's connection settings."""
    target = async_url(url)
    engine = create_async_engine(target, **kwargs)
    if target.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def upsert_insert(session: AsyncSession) -> Any:
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing/update``; the generic one has not)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
