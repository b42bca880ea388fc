"""The adapters' half of the platform registry: per platform, how to build its ``Sender`` for an
account and the reader of its webhooks. The facts the core needs (limits, edit/delete, required
settings) are ``broadcaster.domain.platforms``; both are keyed by the same names (tested). Bootstrap
is the only reader of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from adapters.facebook import DEFAULT_GRAPH, DEFAULT_VERSION, FacebookSender
from adapters.hooks import facebook as facebook_hooks
from adapters.hooks import telegram as telegram_hooks
from adapters.hooks import webhook as webhook_hooks
from adapters.hooks import zalo as zalo_hooks
from adapters.telegram import DEFAULT_BASE_URL, TelegramSender
from adapters.webhook import WebhookSender
from adapters.zalo import DEFAULT_API, DEFAULT_OAUTH, ZaloSender
from broadcaster.domain.errors import ConfigError
from broadcaster.domain.platforms import FACTS, PlatformFacts
from broadcaster.domain.ports import HookCodec, Sender, TokenStore
from broadcaster.domain.secrets import Secret


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """What an adapter is built from: the account's settings and its secrets, already resolved."""

    name: str
    settings: Mapping[str, object]
    secret: Secret
    secret_named: Callable[[str], Secret | None]  # an extra secret (api_key...), resolved on demand
    tokens: Callable[[], TokenStore]  # the account's rotating OAuth token store (Zalo), opened on demand

    def setting(self, key: str, default: str) -> str:
        value = self.settings.get(key)
        return default if value in (None, "") else str(value)


@dataclass(frozen=True, slots=True)
class Platform:
    facts: PlatformFacts
    build: Callable[[AccountConfig], Sender]
    hooks: HookCodec

    @property
    def name(self) -> str:
        return self.facts.name


def _telegram(cfg: AccountConfig) -> Sender:
    return TelegramSender(cfg.secret, base_url=cfg.setting("base_url", DEFAULT_BASE_URL))


def _zalo(cfg: AccountConfig) -> Sender:
    return ZaloSender(
        cfg.tokens(),
        app_id=cfg.setting("app_id", ""),
        app_secret=cfg.secret,
        base_url=cfg.setting("base_url", DEFAULT_API),
        oauth_url=cfg.setting("oauth_url", DEFAULT_OAUTH),
    )


def _facebook(cfg: AccountConfig) -> Sender:
    return FacebookSender(
        cfg.secret,
        base_url=cfg.setting("base_url", DEFAULT_GRAPH),
        version=cfg.setting("version", DEFAULT_VERSION),
    )


def _webhook(cfg: AccountConfig) -> Sender:
    return WebhookSender(cfg.setting("base_url", ""), cfg.secret, api_key=cfg.secret_named("api_key"))


_BUILD: dict[str, tuple[Callable[[AccountConfig], Sender], HookCodec]] = {
    "telegram": (_telegram, telegram_hooks.CODEC),
    "zalo": (_zalo, zalo_hooks.CODEC),
    "facebook": (_facebook, facebook_hooks.CODEC),
    "webhook": (_webhook, webhook_hooks.CODEC),
}
REGISTRY: Mapping[str, Platform] = MappingProxyType(
    {name: Platform(FACTS[name], *_BUILD[name]) for name in FACTS}
)


def platform(name: str) -> Platform:
    found = REGISTRY.get(name)
    if found is None:
        raise ConfigError(f"no adapter for platform {name!r} (platforms: {', '.join(REGISTRY)})")
    return found


def build(platform_name: str, cfg: AccountConfig) -> Sender:
    """The adapter of ``cfg``'s account, after checking the settings its platform cannot do without."""
    entry = platform(platform_name)
    missing = [key for key in entry.facts.required_settings if cfg.settings.get(key) in (None, "")]
    if missing:
        raise ConfigError(f"{platform_name} account {cfg.name} needs the setting {', '.join(missing)}")
    return entry.build(cfg)
