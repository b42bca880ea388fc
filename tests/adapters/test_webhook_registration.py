"""`cns accounts webhook`: Telegram registered through the Bot API of the sandbox (setWebhook with the
account's hook secret, then getWebhookInfo); other platforms get where and how to set it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from adapters.sandbox import telegram as tg_box
from adapters.sandbox.run import SandboxConfig, Sandboxes
from broadcaster.bootstrap import TELEGRAM_UPDATES, register_webhook
from broadcaster.directory import accounts
from broadcaster.domain.errors import ConfigError
from broadcaster.storage.app import App
from tests.helpers import actor, cns_argv, seed_lai_chau

PUBLIC = "https://cns.laichau.example"


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    running = await Sandboxes(SandboxConfig(only=("telegram",), limits=False)).start()
    yield running
    await running.stop()


async def _accounts(app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TG", boxes.credentials["telegram"]["token"])
    monkeypatch.setenv("T_HOOK", "tg-hook_Secret-1")
    monkeypatch.setenv("T_BAD", "not allowed!")
    await seed_lai_chau(app, villages=False)
    admin = await actor(app, "admin")
    base = {"base_url": boxes.urls["telegram"]}
    async with app.transaction() as s:
        for name, platform, extra, settings in (
            ("tg", "telegram", {"hook": "env:T_HOOK"}, base),
            ("tg-nohook", "telegram", {}, base),
            ("tg-badhook", "telegram", {"hook": "env:T_BAD"}, base),
            ("tg-real", "telegram", {"hook": "env:T_HOOK"}, {}),
            ("zalo", "zalo", {"hook": "env:T_HOOK"}, {"app_id": "1"}),
        ):
            await accounts.add_account(
                s, admin, name, platform, secret_ref="env:T_TG", extra_secrets=extra, settings=settings
            )


async def test_telegram_webhook_is_registered_with_the_secret_and_the_updates_we_read(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _accounts(app, boxes, monkeypatch)
    served = app.with_settings(public_url=PUBLIC + "/")
    done = await register_webhook(served, "tg")
    bot = boxes.running["telegram"].app[tg_box.STATE].bots[boxes.credentials["telegram"]["token"]]
    assert (bot.webhook_url, bot.webhook_secret) == (f"{PUBLIC}/hooks/telegram/tg", "tg-hook_Secret-1")
    assert bot.allowed_updates == list(TELEGRAM_UPDATES)  # reactions only come when asked for
    assert done.registered and done.info is not None and done.info.url == f"{PUBLIC}/hooks/telegram/tg"
    assert done.info.allowed_updates == TELEGRAM_UPDATES

    removed = await register_webhook(served, "tg", delete=True)
    assert bot.webhook_url == "" and not removed.registered
    assert removed.info is not None and removed.info.url == ""


async def test_registration_refuses_what_the_platform_would_and_explains_the_rest(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _accounts(app, boxes, monkeypatch)
    with pytest.raises(ConfigError, match="no 'hook' secret"):
        await register_webhook(app.with_settings(public_url=PUBLIC), "tg-nohook")
    with pytest.raises(ConfigError, match="secret token"):
        await register_webhook(app.with_settings(public_url=PUBLIC), "tg-badhook")
    with pytest.raises(ConfigError, match="HTTPS"):  # api.telegram.org would refuse it
        await register_webhook(app.with_settings(public_url="http://10.0.0.5:8080"), "tg-real")
    zalo = await register_webhook(app.with_settings(public_url=PUBLIC), "zalo")
    assert zalo.url == f"{PUBLIC}/hooks/zalo/zalo" and not zalo.registered
    assert zalo.where is not None and "OA secret key" in zalo.where


async def test_cns_accounts_webhook_through_the_cli(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _accounts(app, boxes, monkeypatch)
    monkeypatch.setenv("CNS_PUBLIC_URL", PUBLIC)
    process = await asyncio.create_subprocess_exec(
        *cns_argv(app.settings.database_url, "--json", "accounts", "webhook", "tg"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)  # the sandbox answers meanwhile
    assert process.returncode == 0, err.decode()
    data = json.loads(out)
    assert data["info"]["url"] == f"{PUBLIC}/hooks/telegram/tg"
