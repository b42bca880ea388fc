"""The link key: without CNS_LINK_SECRET, tracked-link codes, relay confirmation tokens and pseudonyms
used to be keyed by the database URL, so anyone could forge a confirmation. `cns init` now stores 32
random bytes with the database (migration 0009, ``storage.instance_keys``), once, for every process on
it; an existing database gets one when `init` upgrades it; `cns serve` refuses a guessable key on an
address other machines reach."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import delete, select

from broadcaster.bootstrap import initialise
from broadcaster.cli.commands_engagement import refuse_a_guessable_key
from broadcaster.domain.errors import ConfigError
from broadcaster.domain.models import Interaction
from broadcaster.domain.settings import Settings, is_loopback_host
from broadcaster.domain.sqltypes import utcnow
from broadcaster.inbound import privacy
from broadcaster.inbound.links import confirmation_token, link_code, parse_link_code
from broadcaster.storage.app import App
from broadcaster.storage.db import create_engine
from broadcaster.storage.instance_keys import (
    LINK_KEY,
    InstanceSecret,
    ensure_link_key,
    stored_link_key,
    with_link_key,
)
from broadcaster.storage.schema import alembic_config, head_revision
from tests.cli.test_cli import Cns
from tests.helpers import cns_argv
from tests.web.world import build, client


async def test_init_stores_one_random_key_that_every_process_reads(settings: Settings) -> None:
    app, _, _ = await initialise(settings)
    try:
        key = await stored_link_key(app)
        assert key is not None and re.fullmatch(r"[0-9a-f]{64}", key)  # 32 bytes from `secrets`
        assert app.settings.stored_link_key == key and app.settings.key_for_links() == key.encode()
        assert app.settings.key_for_pseudonyms() == key.encode()
        assert not app.settings.link_key_is_guessable
    finally:
        await app.close()
    again, _, _ = await initialise(settings)  # init again: the same key, not a new one
    other = await with_link_key(await App.open(settings))  # another process on the database
    try:
        assert again.settings.stored_link_key == other.settings.stored_link_key == key
        assert other.settings.key_for_links() != settings.legacy_link_key()
    finally:
        await again.close()
        await other.close()


async def test_two_inits_at_once_store_one_key(settings: Settings) -> None:
    app, _, _ = await initialise(settings)
    try:
        async with app.transaction() as s:
            await s.execute(delete(InstanceSecret))
        results = await asyncio.gather(*(ensure_link_key(app) for _ in range(4)))
        assert len({key for key, _ in results}) == 1
        assert sorted(created for _, created in results) == [False, False, False, True]
    finally:
        await app.close()


async def test_an_existing_database_gets_a_key_when_init_upgrades_it(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:  # a database of the release before: schema 0008, no key
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0008"))
    finally:
        await engine.dispose()
    app, before, after = await initialise(Settings(database_url=db_url))
    try:
        assert (before, after) == ("0008", head_revision())
        async with app.sessions() as s:
            rows = (await s.execute(select(InstanceSecret))).scalars().all()
        assert [r.name for r in rows] == [LINK_KEY] and rows[0].value == app.settings.stored_link_key
    finally:
        await app.close()


async def test_a_confirmation_forged_with_the_old_fallback_key_is_refused(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: the database URL is no secret, and it was the key."""
    world = await build(app, monkeypatch)
    delivery = world.deliveries["relay-345103"]
    key = f"delivery-{delivery.id}"
    forged = confirmation_token(Settings(database_url=app.settings.database_url), key)
    issued = confirmation_token(app.settings, key)
    assert forged != issued
    url = "https://vneid.gov.vn/hd"
    assert (
        parse_link_code(app.settings.key_for_links(), link_code(app.settings.legacy_link_key(), 1, url))
        is None
    )
    web = await client(app)
    try:
        assert (await web.post(f"/r/{forged}")).status == 404
        assert (await web.post(f"/r/{issued}")).status == 200
    finally:
        await web.close()


def test_serve_refuses_a_guessable_key_where_others_can_reach_it() -> None:
    guessable = Settings(public_url="https://cns.laichau.gov.vn")
    with pytest.raises(ConfigError, match=r"CNS_PUBLIC_URL https://cns\.laichau\.gov\.vn can be reached"):
        refuse_a_guessable_key(guessable, "127.0.0.1")
    with pytest.raises(ConfigError, match=r"--host 0\.0\.0\.0 can be reached.*run `cns init`"):
        refuse_a_guessable_key(Settings(), "0.0.0.0")
    refuse_a_guessable_key(Settings(), "127.0.0.1")  # this machine only: the demo, tests, a first try
    refuse_a_guessable_key(Settings(public_url="http://localhost:8080"), "::1")
    refuse_a_guessable_key(Settings(public_url="https://cns.laichau.gov.vn", stored_link_key="k"), "0.0.0.0")
    refuse_a_guessable_key(Settings(public_url="https://cns.laichau.gov.vn", link_secret="s"), "0.0.0.0")
    assert [
        is_loopback_host(h) for h in ("localhost", "a.localhost", "127.0.0.2", "[::1]", "10.0.0.5", "")
    ] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_cns_serve_refuses_to_start_without_a_key_on_a_public_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CNS_LINK_SECRET", "CNS_PSEUDONYM_KEY", "CNS_USER"):
        monkeypatch.delenv(name, raising=False)
    db = f"sqlite:///{tmp_path}/serve.db"
    cns = Cns(db, capsys)
    cns.ok("init")

    async def drop_the_key() -> None:  # as a database at head whose key row was lost
        app = await App.open(Settings(database_url=db))
        try:
            async with app.transaction() as s:
                await s.execute(delete(InstanceSecret))
        finally:
            await app.close()

    asyncio.run(drop_the_key())
    env = {**os.environ, "CNS_PUBLIC_URL": "https://cns.laichau.gov.vn"}
    refused = subprocess.run(  # a process of its own: were it to start, the timeout ends the test
        cns_argv(db, "serve", "--port", "0"), capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("cns: error: CNS_PUBLIC_URL https://cns.laichau.gov.vn can be reached")
    assert len(refused.stderr.splitlines()) == 1 and "cns serve listening" not in refused.stderr
    done = cns("init")  # puts a key back (the note is for databases that ran without one)
    assert done.code == 0 and "link key is now stored" in done.err


def test_cli_commands_key_pseudonyms_with_the_stored_key_and_find_older_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CNS_LINK_SECRET", "CNS_PSEUDONYM_KEY", "CNS_USER"):
        monkeypatch.delenv(name, raising=False)
    db = f"sqlite:///{tmp_path}/privacy.db"
    cns = Cns(db, capsys)
    assert cns.ok("init").err == ""  # a new database: nothing to say about links sent before
    cns.ok("users", "add", "root", "--role", "admin")
    legacy = Settings(database_url=db).legacy_link_key()

    async def stored() -> str:
        app = await App.open(Settings(database_url=db))
        try:
            async with app.transaction() as s:  # a reply pseudonymised before the database had its key
                s.add(
                    Interaction(
                        kind="reply",
                        at=utcnow(),
                        platform="zalo",
                        text="trước",
                        actor_hash=privacy.pseudonym(legacy, "zalo", "555"),
                    )
                )
                s.add(
                    Interaction(
                        kind="reply",
                        at=utcnow(),
                        platform="zalo",
                        text="sau",
                        actor_hash=privacy.pseudonym(
                            (await stored_link_key(app) or "").encode(), "zalo", "555"
                        ),
                    )
                )
            return await stored_link_key(app) or ""
        finally:
            await app.close()

    key = asyncio.run(stored())
    found = cns.ok("--as", "root", "privacy", "export", "--platform", "zalo", "--user-id", "555").json()
    assert found["pseudonym"] == privacy.pseudonym(key.encode(), "zalo", "555")  # type: ignore[index]
    assert sorted(i["text"] for i in found["interactions"]) == ["sau", "trước"]  # type: ignore[index]
    deleted = cns.ok("--json", "--as", "root", "privacy", "delete", "--platform", "zalo", "--user-id", "555")
    assert deleted.json() == {"interactions": 2, "raw_events": 0}
