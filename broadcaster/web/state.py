"""What the web handlers share: the app, the event store, the hook codecs, counters and caches."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlmodel import col

from broadcaster.domain.errors import CnsError
from broadcaster.domain.models import Account, ContentRevision, pk
from broadcaster.domain.ports import HookCodec
from broadcaster.domain.secrets import resolve
from broadcaster.inbound.processing import EventStore
from broadcaster.storage.app import App

ACCOUNT_TTL = 30.0  # seconds an account's secrets stay cached (a rotated secret is picked up after this)


@dataclass(frozen=True, slots=True)
class HookAccount:
    id: int
    name: str
    platform: str
    secret: str  # the inbound verification secret ("" when none is configured)
    verify_token: str
    settings: Mapping[str, Any]


@dataclass(slots=True)
class WebState:
    app: App
    codecs: Mapping[str, HookCodec]
    store: EventStore
    links_of: Callable[[ContentRevision], list[str]]  # content.render.revision_links
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # stored events are waiting
    last_hook: float = 0.0  # time.monotonic() of the last stored event: a burst is arriving
    counters: Counter[tuple[str, ...]] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)
    _accounts: dict[str, tuple[float, HookAccount | None]] = field(default_factory=dict)

    def count(self, *labels: str) -> None:
        self.counters[labels] += 1

    async def hook_account(self, name: str) -> HookAccount | None:
        cached = self._accounts.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[0] < ACCOUNT_TTL:
            return cached[1]
        if len(name) > 64:
            return None
        async with self.app.sessions() as s:
            account = (await s.execute(select(Account).where(col(Account.name) == name))).scalar_one_or_none()
        found = None if account is None else self._load(account)
        if len(self._accounts) > 10_000:  # names probed by strangers must not grow the cache forever
            self._accounts.clear()
        self._accounts[name] = (now, found)
        return found

    def _load(self, account: Account) -> HookAccount:
        refs = account.settings.get("secrets", {})
        return HookAccount(
            id=pk(account.id),
            name=account.name,
            platform=account.platform,
            secret=self._secret(refs.get("hook")),
            verify_token=self._secret(refs.get("verify_token")),
            settings=account.settings,
        )

    def _secret(self, ref: str | None) -> str:
        if not ref:
            return ""
        try:
            return resolve(ref, self.app.settings.secrets_file).reveal()
        except CnsError:
            return ""  # a missing secret refuses every request (401) rather than accepting unsigned ones


STATE = web.AppKey("state", WebState)
