"""The Alembic migrations produce exactly the models' schema, and `init` upgrades in place.

Alembic's comparison leaves CHECK constraints out (its by-name plugin is opt-in and does not compare
what they allow), so the constraints are compared here: by name, column and allowed values.
"""

from __future__ import annotations

import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import broadcaster.domain.models  # noqa: F401
from broadcaster.bootstrap import initialise
from broadcaster.domain.errors import StorageError
from broadcaster.domain.models import TierLevel, User
from broadcaster.domain.settings import Settings
from broadcaster.storage.app import App
from broadcaster.storage.db import create_engine
from broadcaster.storage.instance_keys import InstanceSecret
from broadcaster.storage.schema import current_revision, ensure_current, head_revision


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


Checks = dict[tuple[str, str], tuple[str, frozenset[str]]]  # (table, name) -> (column, allowed values)


def _check(sql: str) -> tuple[str, frozenset[str]]:
    """(column, quoted values) of ``col IN ('a', 'b')`` as written, or as PostgreSQL gives it back:
    ``((col)::text = ANY ((ARRAY['a'::character varying, ...])::text[]))``."""
    column = re.match(r"[\s(]*(\w+)", sql)
    assert column is not None, sql
    return column.group(1), frozenset(v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", sql))


def model_checks() -> Checks:
    return {
        (table.name, str(c.name)): _check(str(c.sqltext))
        for table in SQLModel.metadata.tables.values()
        for c in table.constraints
        if isinstance(c, CheckConstraint)
    }


def database_checks(connection: Connection) -> Checks:
    inspector = inspect(connection)
    return {
        (table, str(ck["name"])): _check(ck["sqltext"])
        for table in inspector.get_table_names()
        for ck in inspector.get_check_constraints(table)
    }


async def test_migrations_match_models_exactly(app: App) -> None:
    async with app.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        checks = await conn.run_sync(database_checks)
    assert diff == []
    assert set(SQLModel.metadata.tables) <= tables
    assert InstanceSecret.__tablename__ in tables  # a table of storage's own (migration 0009), compared too
    assert checks == model_checks()
    assert len(checks) >= 14  # every state, status and mode column (tests/storage/test_state_checks.py)
    assert await current_revision(app.engine) == head_revision()


async def test_a_model_change_without_migration_is_detected(app: App) -> None:
    """The comparison above can fail: drop an index the models declare and it reports it."""
    async with app.engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_unit_code"))
        diff = await conn.run_sync(_diff)
    assert any("ix_unit_code" in repr(d) for d in diff)


async def test_a_check_constraint_drift_is_detected(app: App) -> None:
    """The CHECK comparison can fail too: a constraint allowing other values than the model's, one
    missing, one the models do not have."""

    def drift(connection: Connection) -> None:
        ops = Operations(MigrationContext.configure(connection))
        with ops.batch_alter_table("delivery") as batch:
            batch.drop_constraint("ck_delivery_state", type_="check")
            batch.create_check_constraint("ck_delivery_state", "state IN ('planned', 'sent')")
        with ops.batch_alter_table("dispatch") as batch:
            batch.drop_constraint("ck_dispatch_status", type_="check")
        with ops.batch_alter_table("unit") as batch:
            batch.create_check_constraint("ck_unit_level", "level IN ('province')")

    async with app.engine.begin() as conn:
        await conn.run_sync(drift)
        checks = await conn.run_sync(database_checks)
    models = model_checks()
    changed = {key for key in checks.keys() | models.keys() if checks.get(key) != models.get(key)}
    assert changed == {
        ("delivery", "ck_delivery_state"),
        ("dispatch", "ck_dispatch_status"),
        ("unit", "ck_unit_level"),
    }
    assert checks[("delivery", "ck_delivery_state")] == ("state", frozenset({"planned", "sent"}))


async def test_init_twice_keeps_data(settings: Settings) -> None:
    app, before, after = await initialise(settings)
    assert before is None and after == head_revision()
    async with app.transaction() as s:
        s.add(User(name="keep.me", role="viewer"))
    await app.close()

    app, before, after = await initialise(settings)
    assert before == after == head_revision()
    async with app.transaction() as s:
        names = (await s.execute(select(User.name))).scalars().all()  # type: ignore[call-overload]
        tiers = (await s.execute(select(func.count()).select_from(TierLevel))).scalar_one()
    await app.close()
    assert names == ["keep.me"]
    assert tiers == 4  # seeded once, not again


async def test_uninitialised_database_is_refused(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(StorageError, match="cns init"):
            await ensure_current(engine)
    finally:
        await engine.dispose()


async def test_upgrade_from_the_first_revision_keeps_data(db_url: str) -> None:
    """A database created by an older release (schema 0001) is upgraded in place by `init`."""
    from alembic import command

    from broadcaster.storage.schema import alembic_config

    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            await conn.execute(
                text(
                    "INSERT INTO app_user (name, full_name, role, active, created_at) "
                    "VALUES ('old.user', '', 'viewer', true, CURRENT_TIMESTAMP)"
                )
            )
    finally:
        await engine.dispose()
    app, before, after = await initialise(Settings(database_url=db_url))
    async with app.transaction() as s:
        names = (await s.execute(select(User.name))).scalars().all()  # type: ignore[call-overload]
    async with app.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
        checks = await conn.run_sync(database_checks)
    await app.close()
    assert (before, after) == ("0001", head_revision())
    assert names == ["old.user"]
    assert diff == []
    assert checks == model_checks()
