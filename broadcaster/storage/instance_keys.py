"""The installation's own link key, kept with the database it protects.

Tracked-link codes, relay confirmation tokens and citizens' pseudonyms are HMACs. Their key is
``CNS_LINK_SECRET`` (``CNS_PSEUDONYM_KEY`` for pseudonyms) when set; otherwise ``cns init`` stores 32
random bytes from :mod:`secrets` here (table ``instance_secret``, migration 0009), once per database, and
every process that opens the database reads it (``with_link_key``). So several ``cns serve`` and ``cns
worker`` processes on one PostgreSQL, on as many machines, issue and check the same codes without any
file to copy between them, and a backup restores the key together with the data keyed by it. Without it
the key was derived from the database URL, which anyone can guess.

This is not a platform credential (those are never stored: accounts hold references); whoever can read
the database can read this key, so a deployment that wants the key kept out of the database and its
backups sets ``CNS_LINK_SECRET`` (and ``CNS_PSEUDONYM_KEY``) instead.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Field, SQLModel, col

from broadcaster.domain.sqltypes import UTCDateTime, utcnow
from broadcaster.storage.app import App
from broadcaster.storage.db import upsert_insert

LINK_KEY = "link_key"
KEY_BYTES = 32


class InstanceSecret(SQLModel, table=True):
    """A secret this installation generated for itself (see the module's docstring)."""

    __tablename__ = "instance_secret"

    name: str = Field(primary_key=True, max_length=32)
    value: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


async def ensure_link_key(app: App) -> tuple[str, bool]:
    """The key stored with the database, created now when it has none; and whether it was created.
    Two ``cns init`` at once store one key: the second insert does nothing and both read the first."""
    async with app.transaction() as s:
        added = await s.execute(
            upsert_insert(s)(InstanceSecret)
            .values(name=LINK_KEY, value=secrets.token_bytes(KEY_BYTES).hex(), created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        value = (
            await s.execute(select(col(InstanceSecret.value)).where(col(InstanceSecret.name) == LINK_KEY))
        ).scalar_one()
    return str(value), bool(added.rowcount)  # type: ignore[attr-defined]


async def stored_link_key(app: App) -> str | None:
    async with app.transaction() as s:
        value = (
            await s.execute(select(col(InstanceSecret.value)).where(col(InstanceSecret.name) == LINK_KEY))
        ).scalar_one_or_none()
    return None if value is None else str(value)


async def with_link_key(app: App) -> App:
    """``app`` with the key stored with its database in its settings (``Settings.key_for_links``); as it
    was when the database has none (``cns init`` creates it)."""
    key = await stored_link_key(app)
    return app.with_settings(stored_link_key=key) if key else app
