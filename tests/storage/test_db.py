"""Connection settings and database errors."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from broadcaster.bootstrap import initialise
from broadcaster.domain.errors import StorageError
from broadcaster.domain.settings import Settings
from broadcaster.storage.app import App
from broadcaster.storage.db import async_url, create_engine, describe_url


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/p.db")
    async with engine.connect() as conn:
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
        busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
    await engine.dispose()
    assert (mode, fks, busy) == ("wal", 1, 10_000)


def test_urls_are_mapped_to_async_drivers() -> None:
    assert async_url("sqlite:///./cns.db").drivername == "sqlite+aiosqlite"
    assert async_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    with pytest.raises(StorageError, match="unsupported database"):
        async_url("mysql://u@h/db")
    with pytest.raises(StorageError, match="invalid database URL"):
        async_url("not a url")
    assert "s3cret" not in describe_url("postgresql://u:s3cret@h/db")


async def test_unreachable_postgres_is_a_clear_error() -> None:
    # Port 1 on loopback refuses connections at once.
    with pytest.raises(StorageError, match="cannot initialise the database"):
        await initialise(Settings(database_url="postgresql://postgres@127.0.0.1:1/none"))


async def test_sqlite_in_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with pytest.raises(StorageError, match="cannot open the database"):
        await App.open(Settings(database_url=f"sqlite:///{tmp_path}/missing/dir/cns.db"))
    # aiosqlite stops the thread of a connection that failed to open without waiting for it: let it
    # finish while this test's loop runs (else it reports "Event loop is closed" in a later test).
    for _ in range(500):
        if not set(threading.enumerate()) - before:
            break
        await asyncio.sleep(0.01)
    assert not set(threading.enumerate()) - before
