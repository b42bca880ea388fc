"""Test helpers that build a realistic world through the product's own services."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from broadcaster.cli.demo import data_file
from broadcaster.directory import accounts, users
from broadcaster.directory.users import Actor
from broadcaster.storage.app import App
from broadcaster.units.importer import import_units

REFORM = date(2025, 7, 1)
# What each platform's accounts cannot do without (broadcaster.domain.platforms), for accounts that
# tests never really send through.
REQUIRED_SETTINGS = {"zalo": {"app_id": "1"}, "webhook": {"base_url": "https://bridge.example"}}
TODAY = date(2026, 11, 28)


async def actor(app: App, name: str) -> Actor:
    async with app.transaction() as s:
        return await users.get_actor(s, name)


async def seed_lai_chau(app: App, *, villages: bool = True) -> None:
    """Admin user, the 2022 and 2025 structures (with the mapping) and the Mù Cả village sample."""
    async with app.transaction() as s:
        await users.add_user(s, None, "admin", "admin", today=TODAY)
    async with app.transaction() as s:
        await import_units(s, data_file("laichau-2022-units.csv"), date(2022, 1, 1))
    async with app.transaction() as s:
        await import_units(
            s, data_file("laichau-2025-units.csv"), REFORM, data_file("laichau-2022-to-2025-communes.csv")
        )
    if villages:
        async with app.transaction() as s:
            await import_units(s, data_file("laichau-villages-sample.csv"), REFORM)


async def add_users(app: App, specs: list[tuple[str, str, str | None]]) -> None:
    async with app.transaction() as s:
        for name, role, scope in specs:
            await users.add_user(s, "admin", name, role, scope_code=scope, today=TODAY)


async def add_accounts(app: App) -> None:
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        for name, platform in (("tg", "telegram"), ("zalo", "zalo"), ("fb", "facebook"), ("hook", "webhook")):
            await accounts.add_account(
                s,
                admin,
                name,
                platform,
                secret_ref=f"env:CNS_TEST_{platform.upper()}",
                settings=REQUIRED_SETTINGS.get(platform),
            )


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def cns_argv(database_url: str, *args: str) -> list[str]:
    """``cns --db URL ARGS...`` as a child process runs it: the command line a user types."""
    return [sys.executable, "-m", "broadcaster.cli.main", "--db", database_url, *args]
