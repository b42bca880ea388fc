"""The composition root: wires the platform adapters, renderer, dispatcher and web app over a storage
``App``. Only the CLI (and tests, benchmarks) import this module."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broadcaster.domain.errors import ConfigError, InputError
from broadcaster.domain.models import Account
from broadcaster.domain.platforms import platform_facts
from broadcaster.domain.ports import HookCodec, Sender, WebhookInfo
from broadcaster.domain.results import OMIT_IF_NONE
from broadcaster.domain.secrets import Secret, resolve
from broadcaster.domain.settings import Settings
from broadcaster.inbound.links import confirmation_token, link_tracker
from broadcaster.storage.app import App
from broadcaster.storage.instance_keys import ensure_link_key
from broadcaster.units.tiers import seed_default_tiers

if TYPE_CHECKING:
    from broadcaster.dispatch.dispatcher import Dispatcher, Stats


@dataclass(frozen=True, slots=True)
class InitResult:
    """``cns init``: the database (password hidden) and its schema revision before (None: new) and after."""

    database: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    """``cns worker``: what one worker did until it stopped (``errors``: platform errors by class)."""

    worker: str
    claimed: int
    sent: int
    failed: int
    retried: int
    recovered: int
    errors: Mapping[str, int]

    @classmethod
    def of(cls, worker: str, stats: Stats) -> WorkerSummary:
        return cls(
            worker,
            stats.claimed,
            stats.sent,
            stats.failed,
            stats.retried,
            stats.recovered,
            dict(stats.errors),
        )


@dataclass(frozen=True, slots=True)
class ServeSummary:
    """``cns serve``: where it listened, once stopped."""

    url: str


async def initialise(settings: Settings) -> tuple[App, str | None, str | None]:
    """``cns init``: create or upgrade the schema in place, seed the default tier schema on a new
    database and store a random link key with a database that has none (``storage.instance_keys``).
    Returns the app (its settings holding that key) and the schema revisions before and after."""
    app, before, after, _ = await initialise_reporting_key(settings)
    return app, before, after


async def initialise_reporting_key(settings: Settings) -> tuple[App, str | None, str | None, bool]:
    """:func:`initialise`, also saying whether the link key was created now (``cns init`` tells an
    upgraded database's operator that links sent before no longer open)."""
    app, before, after = await App.initialise(settings, seed=seed_default_tiers)
    try:
        key, created = await ensure_link_key(app)
    except BaseException as exc:
        await app.close()
        unavailable = app.unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc
    return app.with_settings(stored_link_key=key), before, after, created


# Young-generation collections every 50,000 net container allocations instead of 700.
GC_THRESHOLD = 50_000


def tune_gc() -> None:
    """For the long-running processes (``cns worker``, ``cns serve``), once at start.

    With a thousand deliveries in flight, CPython's default (a collection per 700 net allocations)
    promoted each batch's short-lived objects to the old generation and ran a full collection about
    once a second: 18 % of the dispatcher's time (measured with gc.callbacks on a 10,000-delivery
    dispatch). What is alive after start-up (modules, settings) is frozen out of the collector, and the
    young generation is collected far less often; garbage without cycles is freed by reference
    counting either way, and cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def build_sender(account: Account, settings: Settings, environ: Mapping[str, str] | None = None) -> Sender:
    """The adapter for one account (from the platform registry), with its secrets resolved now (never
    stored on the account). The settings each platform reads are listed in the README (Platforms)."""
    from adapters import registry
    from broadcaster.storage.token_store import FileTokenStore

    if not account.secret_ref:
        raise ConfigError(f"account {account.name} has no secret reference")
    secret = resolve(account.secret_ref, settings.secrets_file, environ)
    extras: Mapping[str, str] = account.settings.get("secrets", {})

    def extra(name: str) -> Secret | None:
        ref = extras.get(name)
        return resolve(ref, settings.secrets_file, environ) if ref else None

    config = registry.AccountConfig(
        name=account.name,
        settings=account.settings,
        secret=secret,
        secret_named=extra,
        tokens=lambda: FileTokenStore(settings.token_dir / f"{account.platform}-{account.name}.json"),
    )
    return registry.build(account.platform, config)


def sender_factories(
    settings: Settings,
) -> tuple[Callable[[Account], Sender], Callable[[Mapping[str, Sender]], Sender]]:
    """How to get an account's adapter, and a relay over given channels (confirmation links included)."""
    from adapters.relay import RelaySender

    base = settings.public_url.rstrip("/")

    def confirm_link(key: str) -> str:
        return f"{base}/r/{confirmation_token(settings, key)}"

    def senders(account: Account) -> Sender:
        return build_sender(account, settings)

    def relay(channels: Mapping[str, Sender]) -> Sender:
        return RelaySender(channels, confirm_link)

    return senders, relay


def make_dispatcher(app: App, **options: Any) -> Dispatcher:
    """The dispatcher with the real adapters, renderer and relay wired in."""
    from broadcaster.dispatch.dispatcher import Dispatcher
    from content.render import RenderCache
    from scheduler.timing import quiet_resume

    senders, relay = sender_factories(app.settings)
    options.setdefault("track", link_tracker(app.settings))
    options.setdefault("quiet", quiet_resume)
    return Dispatcher(
        app,
        senders=senders,
        render=RenderCache(),  # the post rendered once per platform, each target's values filled in
        relay=relay,
        public_url=app.settings.public_url,
        **options,
    )


def hook_codecs() -> dict[str, HookCodec]:
    """Each platform's webhook reader (``adapters.hooks``), by platform name, from the registry."""
    from adapters.registry import REGISTRY

    return {name: entry.hooks for name, entry in REGISTRY.items()}


def make_web_app(app: App, *, process: bool = True) -> Any:
    """The ``cns serve`` application over ``app`` (an ``aiohttp.web.Application``)."""
    from broadcaster.web.server import create_app
    from content.render import revision_links

    return create_app(app, hook_codecs(), revision_links, process=process)


# The Telegram updates `cns serve` reads; reactions are only sent when listed here (and to admin bots).
TELEGRAM_UPDATES = ("message", "channel_post", "message_reaction", "message_reaction_count", "my_chat_member")


@dataclass(frozen=True, slots=True)
class WebhookRegistration:
    """``cns accounts webhook``: the URL ``cns serve`` is reached at for this account; Telegram's own
    view after registering (``info``), or, for the platforms set up in a console, ``where``."""

    account: str
    platform: str
    url: str
    registered: bool
    where: str | None = field(default=None, metadata=OMIT_IF_NONE)
    info: WebhookInfo | None = field(default=None, metadata=OMIT_IF_NONE)


async def register_webhook(app: App, account_name: str, *, delete: bool = False) -> WebhookRegistration:
    """Point the account's platform at ``cns serve`` (``{CNS_PUBLIC_URL}/hooks/{platform}/{account}``).

    Telegram is registered through the Bot API (setWebhook with the account's 'hook' secret as the
    secret token, then getWebhookInfo as the platform sees it); the other platforms are configured in
    their developer consoles, so the answer says where and with which secret."""
    from adapters.telegram import DEFAULT_BASE_URL, TelegramSender
    from broadcaster.directory.accounts import get_account

    async with app.sessions() as s:
        account = await get_account(s, account_name)
    url = f"{app.settings.public_url.rstrip('/')}/hooks/{account.platform}/{account.name}"
    hook_ref = account.settings.get("secrets", {}).get("hook")
    if not hook_ref and not delete:
        raise ConfigError(
            f"account {account.name} has no 'hook' secret: add one with "
            f"`cns accounts add ... --extra-secret hook=env:NAME` (requests are checked against it)"
        )
    if account.platform != "telegram":
        if delete:
            raise InputError(f"{account.platform} webhooks are removed in the platform's console")
        return WebhookRegistration(
            account.name, account.platform, url, False, where=platform_facts(account.platform).hook_setup
        )
    secret = resolve(hook_ref, app.settings.secrets_file).reveal() if hook_ref else ""
    if not delete and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise ConfigError("Telegram's secret token is 1-256 of A-Z a-z 0-9 _ -: change the 'hook' secret")
    if (
        not delete
        and not url.startswith("https://")
        and account.settings.get("base_url") in (None, DEFAULT_BASE_URL)
    ):
        raise ConfigError(
            f"Telegram only calls HTTPS webhooks: set CNS_PUBLIC_URL to https://... (now {url})"
        )
    sender = build_sender(account, app.settings)
    assert isinstance(sender, TelegramSender)
    try:
        if delete:
            await sender.delete_webhook()
        else:
            await sender.set_webhook(url, secret, TELEGRAM_UPDATES)
        info = await sender.webhook_info()
    finally:
        await sender.close()
    return WebhookRegistration(account.name, account.platform, url, not delete, info=info)
