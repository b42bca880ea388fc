"""Platform accounts: one bot / OA / page / webhook endpoint each, with secret references only."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.users import Actor, Permission
from broadcaster.domain.errors import ConfigError, Conflict, InputError, NotFound
from broadcaster.domain.models import Account
from broadcaster.domain.platforms import platform_facts
from broadcaster.domain.results import Json
from broadcaster.domain.secrets import (
    contains_credential,
    is_available,
    looks_secret,
    parse_ref,
    redact,
    redact_text,
    resolve,
    url_secrets,
    whsec_key,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_platform(platform: str) -> str:
    """The platform's registry name, or an ``InputError`` naming the platforms there are."""
    return platform_facts(platform).name


def _strings(value: Any) -> Iterator[str]:
    """Every string in a setting's value (lists and mappings included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings are stored as given, so nothing secret may be among them: not a secret-named setting,
    not a value that looks like a credential, not a URL carrying one (a password, or a query or fragment
    parameter named like a secret: what output redaction would hide)."""
    clean: dict[str, Any] = {}
    for key, value in settings.items():
        texts = list(_strings(value))
        if looks_secret(key) or any(contains_credential(t) for t in texts):
            raise InputError(
                f"setting {key!r} looks like a secret: put it in the environment or the secrets file "
                "and reference it with --secret"
            )
        named = [name for text in texts for name in url_secrets(text)]
        if named:
            shown = ", ".join(repr(redact_text(n[:40])) for n in dict.fromkeys(named))
            raise InputError(
                f"setting {key!r} carries a secret in its URL ({shown}): a URL must not carry a password "
                "or secret parameters; put the secret in the environment or the secrets file and "
                "reference it with --secret or --extra-secret"
            )
        clean[key] = value
    base_url = clean.get("base_url")
    if base_url is not None:
        parts = urlsplit(str(base_url))
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise InputError(f"base_url must be an http(s) URL, not {base_url!r}")
    return clean


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret reference (``env:NAME``, ``file:KEY``; never the value) and whether it resolves."""

    ref: str
    available: bool


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An account as ``cns accounts add|list`` show it: settings redacted, secrets by reference."""

    name: str
    platform: str
    status: str
    settings: Mapping[str, Json]
    secrets: Mapping[str, SecretInfo]  # "main" (--secret) first, then the named extra secrets

    @classmethod
    def of(cls, account: Account, secrets_file: Path | None = None) -> AccountInfo:
        refs = {"main": account.secret_ref} if account.secret_ref else {}
        refs.update(account.settings.get("secrets", {}))
        return cls(
            account.name,
            account.platform,
            account.status,
            redact({k: v for k, v in account.settings.items() if k != "secrets"}),
            {k: SecretInfo(ref, is_available(ref, secrets_file)) for k, ref in refs.items()},
        )


async def add_account(
    session: AsyncSession,
    actor: Actor,
    name: str,
    platform: str,
    *,
    secret_ref: str | None,
    extra_secrets: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    secrets_file: Path | None = None,
) -> Account:
    actor.require(Permission.MANAGE_ACCOUNTS)
    if not _NAME.match(name):
        raise InputError(f"invalid account name {name!r}: letters, digits, '.', '_' or '-'")
    facts = platform_facts(platform)
    platform = facts.name
    for ref in [secret_ref, *(extra_secrets or {}).values()]:
        if ref is not None:
            parse_ref(ref)
    stored = _check_settings(dict(settings or {}))
    missing = [key for key in facts.required_settings if stored.get(key) in (None, "")]
    if missing:
        raise InputError(
            f"a {platform} account needs the setting {', '.join(missing)} (--set {missing[0]}=...): "
            "without it nothing can be sent"
        )
    if facts.whsec_secret:  # a key that cannot sign would fail every send: refuse it now when we can read it
        for ref in (secret_ref, (extra_secrets or {}).get("hook")):
            if ref and is_available(ref, secrets_file):
                try:
                    whsec_key(resolve(ref, secrets_file).reveal())
                except ConfigError as exc:
                    raise InputError(f"secret {ref}: {exc}") from None
    if extra_secrets:
        stored["secrets"] = dict(extra_secrets)
    if (await session.execute(select(col(Account.id)).where(col(Account.name) == name))).first():
        raise Conflict(f"account {name} already exists")
    account = Account(name=name, platform=platform, settings=stored, secret_ref=secret_ref)
    session.add(account)
    await session.flush()
    await audit.record(session, actor.name, "account.add", "account", name, after=AccountInfo.of(account))
    return account


async def get_account(session: AsyncSession, name: str) -> Account:
    account = (await session.execute(select(Account).where(col(Account.name) == name))).scalar_one_or_none()
    if account is None:
        raise NotFound(f"unknown account {name!r}")
    return account


async def list_accounts(session: AsyncSession) -> list[Account]:
    return list((await session.execute(select(Account).order_by(col(Account.name)))).scalars())


async def account_list(session: AsyncSession, secrets_file: Path | None = None) -> list[AccountInfo]:
    """``cns accounts list``: every account, by name."""
    return [AccountInfo.of(a, secrets_file) for a in await list_accounts(session)]
