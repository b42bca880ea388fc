"""Engines and sessions: SQLite by default (WAL, foreign keys, busy timeout), PostgreSQL via asyncpg
(connect, command and pool timeouts); and what "the database is unavailable" means
(:func:`as_unavailable`)."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from broadcaster.domain.errors import CnsError, DatabaseUnavailable, StorageError

SQLITE_BUSY_TIMEOUT_MS = 10_000
# PostgreSQL: a server that accepts connections but does not answer (stalled, failing over, a
# network gone quiet) must not hold a caller forever. Establishing a connection takes milliseconds on
# a LAN; the worker's statements take < 0.1 s at 10,000 deliveries (benchmarks/dispatch_throughput.py),
# so 10 s without an answer is an outage, while a large report or plan still has room; migrations
# run without it. Web requests that a platform times (webhooks, /healthz) have their own, shorter
# deadline (broadcaster/web/hooks.py).
CONNECT_TIMEOUT = 1.0  # seconds to establish a connection (asyncpg ``timeout``)
COMMAND_TIMEOUT = 10.0  # seconds a statement may go unanswered (asyncpg ``command_timeout``)
POOL_TIMEOUT = 1.0  # seconds to wait for a free pooled connection


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


def _drop_broken(context: ExceptionContext) -> None:
    # A statement that timed out (or a socket error) leaves the connection in an unknown state, its
    # statement perhaps still running: it is discarded at once, with the pool's other connections,
    # instead of being rolled back (another wait for an answer that may never come) or reused.
    if isinstance(context.original_exception, OSError):  # TimeoutError is an OSError
        context.is_disconnect = True
        if context.connection is not None:
            with contextlib.suppress(Exception):
                driver = context.connection.connection.driver_connection
                if driver is not None:
                    driver.terminate()


def create_engine(url: str, *, command_timeout: float | None = COMMAND_TIMEOUT, **kwargs: Any) -> AsyncEngine:
    """Create an async engine for ``url`` with the project's connection settings (for PostgreSQL,
    ``command_timeout`` None lets statements run as long as they take)."""
    target = async_url(url)
    postgres = target.get_backend_name() == "postgresql"
    if postgres:
        connect_args = {"timeout": CONNECT_TIMEOUT, "command_timeout": command_timeout}
        kwargs = {
            "pool_timeout": POOL_TIMEOUT,
            **kwargs,
            "connect_args": {**connect_args, **kwargs.get("connect_args", {})},
        }
    engine = create_async_engine(target, **kwargs)
    if postgres:
        event.listen(engine.sync_engine, "handle_error", _drop_broken)
    else:
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


def database_name(url: str) -> str:
    """Which database, for messages: ``host:port/name`` or the SQLite file (never a password)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<invalid URL>"
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


# SQLSTATE classes that mean the server cannot take the request now, whatever it is: connection
# exceptions (08), insufficient resources (53: too many connections, disk full), operator
# intervention (57P01-57P05: shutting down, crashed, starting up, database dropped).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P0")
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file", "disk i/o error")
_DRIVERS = frozenset({"sqlalchemy", "asyncpg", "aiosqlite"})


def as_unavailable(exc: BaseException, url: str) -> DatabaseUnavailable | None:
    """``exc`` as a :class:`DatabaseUnavailable` naming the database at ``url`` when it says the
    database did not answer (a connection refused, dropped or timed out, the pool exhausted, the
    server shutting down or out of connections, SQLite's file locked or gone); None for anything
    else: a statement the database refused (an IntegrityError...) is an answer, and so is a bug."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if isinstance(exc, CnsError) or not isinstance(exc, Exception):
        return None
    cause = _unavailability(exc)
    if cause is None:
        return None
    return DatabaseUnavailable(database_name(url), _reason(cause))


def _unavailability(exc: Exception) -> BaseException | None:
    """The error that tells the database did not answer, or None."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection became free in time
        return exc
    if isinstance(exc, sa_exc.DBAPIError):
        driver = _driver_error(exc)
        if exc.connection_invalidated or _says_unavailable(driver):
            return driver
        return None
    if _says_unavailable(exc) and not isinstance(exc, OSError):  # a driver's error, not wrapped
        return exc
    if isinstance(exc, OSError) and _raised_in_driver(exc):  # connecting; a command timed out
        return exc
    return None


def _driver_error(exc: sa_exc.DBAPIError) -> BaseException:
    # SQLAlchemy's asyncio adapters wrap the driver's exception in their own (raised from it).
    error: BaseException = exc.orig if exc.orig is not None else exc
    while error.__cause__ is not None and type(error).__module__.startswith("sqlalchemy"):
        error = error.__cause__
    return error


def _says_unavailable(error: BaseException) -> bool:
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    message = str(error).lower()
    if type(error).__module__.startswith("asyncpg"):  # InterfaceError: "connection is closed"
        return "connection is closed" in message or "connection was closed" in message
    if isinstance(error, OSError):
        return True
    return message.startswith(_SQLITE_UNAVAILABLE)


def _raised_in_driver(exc: BaseException) -> bool:
    # An OSError or TimeoutError says "unavailable" only when the database driver raised it: the same
    # class from a platform request or a file read inside a transaction is no database's doing.
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0] in _DRIVERS:
            return True
        tb = tb.tb_next
    return False


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    reason = text[0].split(" (Background on this error")[0] if text else ""
    if not reason and isinstance(error, TimeoutError):
        return "no answer in time"
    return reason or type(error).__name__
