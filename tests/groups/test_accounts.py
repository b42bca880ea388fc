"""Accounts keep secret references only, and every output redacts secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcaster.directory import accounts, audit
from broadcaster.domain.errors import ConfigError, InputError, PermissionDenied
from broadcaster.domain.models import Account
from broadcaster.domain.secrets import Secret, redact, resolve
from broadcaster.storage.app import App
from tests.helpers import actor, add_users, seed_lai_chau

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


async def test_account_stores_reference_not_secret(app: App) -> None:
    await seed_lai_chau(app, villages=False)
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        await accounts.add_account(
            s,
            admin,
            "tg",
            "telegram",
            secret_ref="env:CNS_TG_TOKEN",
            settings={"base_url": "http://127.0.0.1:8081/bot"},
        )
    async with app.transaction() as s:
        account = (await s.execute(select(Account))).scalar_one()
        entries = await audit.entries(s, entity="account")
    assert account.secret_ref == "env:CNS_TG_TOKEN"
    shown = accounts.AccountInfo.of(account)
    assert shown.secrets == {"main": accounts.SecretInfo(ref="env:CNS_TG_TOKEN", available=False)}
    assert entries[0].after is not None and entries[0].actor == "admin"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret_ref": TOKEN}, "must be given as a reference"),
        ({"secret_ref": None, "settings": {"token": "abc"}}, "looks like a secret"),
        (
            {"secret_ref": None, "settings": {"base_url": f"https://api.telegram.org/bot{TOKEN}"}},
            "looks like a secret",
        ),
        ({"secret_ref": None, "settings": {"base_url": "ftp://x"}}, "must be an http"),
        ({"secret_ref": None, "settings": {"base_url": "http://u:pw@host/"}}, "must not carry a password"),
    ],
)
async def test_plain_secrets_are_refused(app: App, kwargs: dict[str, object], message: str) -> None:
    await seed_lai_chau(app, villages=False)
    admin = await actor(app, "admin")
    with pytest.raises(InputError, match=message) as info:
        async with app.transaction() as s:
            await accounts.add_account(s, admin, "tg", "telegram", **kwargs)  # type: ignore[arg-type]
    assert TOKEN not in str(info.value)


async def test_only_an_unscoped_admin_manages_accounts(app: App) -> None:
    await seed_lai_chau(app, villages=False)
    await add_users(app, [("ed", "editor", None), ("commune.admin", "admin", "03451")])
    for name in ("ed", "commune.admin"):
        who = await actor(app, name)
        with pytest.raises(PermissionDenied):
            async with app.transaction() as s:
                await accounts.add_account(s, who, "x", "zalo", secret_ref=None)


def test_secret_resolution(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"tg": TOKEN}))
    value = resolve("file:tg", secrets)
    assert value.reveal() == TOKEN
    assert TOKEN not in repr(value) and TOKEN not in str(value) and TOKEN not in f"{value}"
    assert resolve("env:X", None, {"X": "v"}).reveal() == "v"
    with pytest.raises(ConfigError, match="not set"):
        resolve("env:MISSING", None, {})
    with pytest.raises(ConfigError, match="not in the secrets file"):
        resolve("file:nope", secrets)
    toml = tmp_path / "s.toml"
    toml.write_text('tg = "abc"\n')
    assert resolve("file:tg", toml).reveal() == "abc"
    assert isinstance(value, Secret)


def test_redaction() -> None:
    data = {
        "token": "abc",
        "base_url": "https://h/x?access_token=zzz&v=1",
        "note": f"uses {TOKEN}",
        "nested": [{"password": "p"}],
        "secret_ref": "env:A",
    }
    out = json.dumps(redact(data))
    for leaked in ("abc", "zzz", TOKEN, '"p"'):
        assert leaked not in out
    assert "env:A" in out and "v=1" in out


@pytest.mark.parametrize(
    ("extra", "parameter"),
    [
        ({"oauth_url": "https://oauth.example/?secret_key=abc123"}, "secret_key"),
        ({"base_url": "https://api.example/v3?app_id=1&access_token=abc123"}, "access_token"),
        ({"callback": "HTTPS://h.example/cb?x=1&Api_Key=abc123"}, "Api_Key"),
        ({"hook_url": "http://h.example/cb?client%5Fsecret=abc123"}, "client_secret"),
        ({"oauth_url": "https://h.example/cb#access_token=abc123"}, "access_token"),
        ({"oauth_url": "https://h.example/cb?a=1;password=abc123"}, "password"),
        ({"oauth_url": "wss://h.example/ws?token=abc123"}, "token"),
        ({"oauth_url": "https://user:abc123@h.example/"}, "password"),
    ],
)
async def test_secrets_in_setting_urls_are_refused(app: App, extra: dict[str, str], parameter: str) -> None:
    """What redaction would hide in an output is refused as input: it would sit in the database."""
    await seed_lai_chau(app, villages=False)
    admin = await actor(app, "admin")
    with pytest.raises(InputError, match=f"setting '{next(iter(extra))}' carries a secret") as info:
        async with app.transaction() as s:
            await accounts.add_account(
                s, admin, "zalo", "zalo", secret_ref="env:Z", settings={"app_id": "1", **extra}
            )
    assert parameter in str(info.value) and "abc123" not in str(info.value)
    async with app.sessions() as s:
        assert (await s.execute(select(Account))).first() is None


async def test_urls_without_secrets_are_kept(app: App) -> None:
    await seed_lai_chau(app, villages=False)
    admin = await actor(app, "admin")
    url = "https://oauth.zaloapp.com/v4/oa/access_token?app_id=1&lang=vi"  # a secret word in the path only
    async with app.transaction() as s:
        account = await accounts.add_account(
            s, admin, "zalo", "zalo", secret_ref="env:Z", settings={"app_id": "1", "oauth_url": url}
        )
    assert account.settings["oauth_url"] == url
