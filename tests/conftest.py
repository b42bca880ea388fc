"""Shared fixtures: a database per test on SQLite and (when CNS_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from broadcaster.bootstrap import initialise
from broadcaster.domain.settings import Settings
from broadcaster.storage.app import App

PG_URL = os.environ.get("CNS_TEST_POSTGRES_URL")


def _pg_execute(sql: str) -> None:
    assert PG_URL is not None

    async def run() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    if not PG_URL:
        pytest.skip("CNS_TEST_POSTGRES_URL is not set: PostgreSQL tests are off (.ci/run sets it)")
    name = f"cns_test_{uuid.uuid4().hex[:12]}"
    _pg_execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cns.db"
        return
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    """An initialised, empty database (default tier schema, no users, no units)."""
    app, _, _ = await initialise(settings)
    try:
        yield app
    finally:
        await app.close()
