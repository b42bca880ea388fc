"""What "the database is unavailable" means (broadcaster.storage.db.as_unavailable), on real errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from broadcaster.bootstrap import initialise
from broadcaster.domain.errors import DatabaseUnavailable
from broadcaster.domain.models import User
from broadcaster.domain.settings import Settings
from broadcaster.storage.app import App
from broadcaster.storage.db import POOL_TIMEOUT, as_unavailable, create_engine, database_name


def test_the_database_is_named_without_its_password() -> None:
    assert database_name("postgresql://cns:s3cret@10.0.0.5:6432/cns") == "10.0.0.5:6432/cns"
    assert database_name("postgresql://cns@db/cns") == "db:5432/cns"
    assert database_name("sqlite:////var/lib/cns/cns.db") == "/var/lib/cns/cns.db"


async def test_refused_is_unavailable_and_named_where_a_refusal_is_not(tmp_path: Path) -> None:
    app = await App.open(Settings(database_url="postgresql://cns:s3cret@127.0.0.1:1/cns"), check_schema=False)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with app.transaction() as s:
                await s.execute(text("SELECT 1"))
        assert str(caught.value).startswith("database 127.0.0.1:1/cns unavailable: ")
        assert "s3cret" not in str(caught.value)
    finally:
        await app.close()
    with pytest.raises(DatabaseUnavailable, match=r"^cannot open the database 127\.0\.0\.1:1/cns: "):
        await App.open(Settings(database_url="postgresql://cns:s3cret@127.0.0.1:1/cns"))

    # A statement the database refuses is an answer; an error of the code inside a transaction (a file,
    # a timeout of something else) is not the database's either.
    app, _, _ = await initialise(Settings(database_url=f"sqlite:///{tmp_path}/cns.db"))
    try:
        for error in (FileNotFoundError("x.pdf"), TimeoutError(), ConnectionResetError()):
            with pytest.raises(type(error)):
                async with app.transaction():
                    raise error
        async with app.transaction() as s:
            s.add(User(name="a", role="admin"))
        with pytest.raises(Exception) as refused:  # noqa: PT011 - the driver's IntegrityError
            async with app.transaction() as s:
                s.add(User(name="a", role="admin"))
        assert "IntegrityError" in type(refused.value).__name__
        assert app.unavailable(refused.value) is None
    finally:
        await app.close()


@pytest.mark.postgres
async def test_no_pooled_connection_in_time_is_unavailable(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(Exception) as waited:  # noqa: PT011 - SQLAlchemy's pool TimeoutError
                async with engine.connect() as second:
                    await second.execute(text("SELECT 1"))
        unavailable = as_unavailable(waited.value, pg_url)
        assert unavailable is not None and f"timeout {POOL_TIMEOUT:.2f}" in unavailable.reason
    finally:
        await engine.dispose()
