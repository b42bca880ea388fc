"""One small harness per Sender implementation, so the contract tests read the same for all of them.

A harness holds the sender, a target that exists, what the platform will say about it (member count,
how a message is shown), and the sandbox's knobs: make a target gone, trip the rate limit, refuse the
credentials, answer 5xx, and read back what the platform received. The real adapters run over real HTTP
on 127.0.0.1 against their sandbox (``adapters/sandbox``); the knobs use the sandbox's ``/__sim`` control
API where it has one, and its state where it has none (as the per-adapter tests do). The in-memory twin
can only be scripted (``fail_next``, ``gone``), which is what its knobs do.

``shape`` is how the platform shows a message, the rule each implementation's message ids follow:

- ``caption`` (Telegram, memory): a chat; each text part is a message, then each medium (an album item
  is a message), except a single medium sent with ``caption``: one message carrying the caption;
- ``chat`` (Zalo OA): each text part is a message, then each image; no captions;
- ``post`` (Facebook Page, webhook bridge): the whole message is one post, its parts joined.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.facebook import FacebookSender
from adapters.memory import MemorySender
from adapters.sandbox import facebook as fb_box
from adapters.sandbox import telegram as tg_box
from adapters.sandbox import webhook_gateway as wh_box
from adapters.sandbox import zalo as zalo_box
from adapters.sandbox.common import Running, SlidingWindow
from adapters.telegram import TelegramSender
from adapters.webhook import WebhookSender
from adapters.zalo import ZaloSender
from broadcaster.domain.errors import AuthFailed, RateLimited, TargetMigrated, TransientError
from broadcaster.domain.ports import OAuthTokens, Sender, Target
from broadcaster.domain.secrets import Secret
from broadcaster.storage.token_store import FileTokenStore

IMPLEMENTATIONS = ("memory", "telegram", "zalo", "facebook", "webhook")

TG_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
TG_CHAT = -1001000000001
FB_PAGE = "104857600123456"
FB_TOKEN = "page-token-abc"
WH_SECRET = "whsec_" + base64.b64encode(b"sandbox-secret-32-bytes-long!!!!").decode()
ZALO_GROUP = "f414c8f76fa586fbdfb4"


def contract(**xfail: str) -> pytest.MarkDecorator:
    """Run a test once per implementation (ids name it); ``xfail`` maps an implementation to the
    reason it does not meet this part of the contract yet (strict: it fails when fixed)."""
    params: list[Any] = [
        pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=xfail[name])])
        if name in xfail
        else pytest.param(name, id=name)
        for name in IMPLEMENTATIONS
    ]
    unknown = set(xfail) - set(IMPLEMENTATIONS)
    assert not unknown, unknown
    return pytest.mark.parametrize("harness", params, indirect=True)


@dataclass(frozen=True)
class Delivered:
    """One message as the platform holds it: its id, text (or caption), media kinds, deleted or not."""

    id: str
    text: str | None
    media: tuple[str, ...] = ()
    deleted: bool = False


@dataclass
class Harness:
    name: str
    sender: Sender
    target: Target
    shape: str  # caption | chat | post (see the module docstring)
    members: int  # what member_count must answer for ``target``
    same_key: str  # a second send with the same key: dedupe | duplicate | refused
    fmt: str = "plain"
    can_edit: bool = True
    can_delete: bool = True
    cannot: dict[str, str] = field(default_factory=dict)  # knob -> why this implementation lacks it
    # The knobs (each None where ``cannot`` says why).
    read: Callable[[], Awaitable[list[Delivered]]] | None = None
    gone: Callable[[], Awaitable[Target]] | None = None
    limit: Callable[[], Awaitable[None]] | None = None
    fail_5xx: Callable[[], Awaitable[None]] | None = None
    bad_credentials: Callable[[], Awaitable[Sender]] | None = None
    migrated: Callable[[], Awaitable[tuple[Target, str]]] | None = None
    uncounted: Target | None = None  # a target whose member count the platform does not give
    # The next send breaks off with a 5xx after its first message went out.
    break_after_first: Callable[[], Awaitable[None]] | None = None

    def needs(self, knob: str) -> None:
        """Skip (never pass silently) when this implementation cannot produce ``knob``."""
        if knob in self.cannot:
            pytest.skip(f"{self.name}: {self.cannot[knob]}")

    async def delivered(self) -> list[Delivered]:
        assert self.read is not None
        return await self.read()


class Sim:
    """Plain HTTP to a sandbox (its control API, or a raw platform call), not through the adapter."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, f"{self.url}{path}", **kwargs) as response:
            assert response.status == 200, (path, response.status, await response.text())
            return await response.json(content_type=None)

    async def close(self) -> None:
        await self.session.close()


FAULTS_5XX = {"error_rate": 1.0}


def break_on_second(path: str) -> dict[str, Any]:
    """Sandbox faults: the second request to ``path`` answers 503, then all is well again."""
    return {"burst_every": 2, "burst_length": 1, "limit": 1, "paths": [path]}


def memory() -> Harness:
    target = Target("memory", "g-1", "CNS_Xã Mù Cả")
    sender = MemorySender("memory", members={"g-1": 12})

    async def read() -> list[Delivered]:
        return [
            Delivered(mid, p.text, tuple(m.kind for m in p.media), p.deleted)
            for mid, p in sender.messages.items()
            if p.target == target.external_id
        ]

    async def gone() -> Target:
        sender.gone.add("g-gone")
        return Target("memory", "g-gone")

    async def limit() -> None:
        sender.fail_next(RateLimited("memory: too many requests", 3.0))

    async def fail_5xx() -> None:
        sender.fail_next(TransientError("memory: HTTP 503"))

    async def break_after_first() -> None:
        sender.fail_after(1, TransientError("memory: HTTP 503 on part 2"))

    async def bad_credentials() -> Sender:
        refused = MemorySender("memory")
        refused.fail_next(AuthFailed("memory: credentials refused"))
        return refused

    async def migrated() -> tuple[Target, str]:
        sender.fail_next(TargetMigrated("memory: the group moved", "g-2"))
        return target, "g-2"

    return Harness(
        "memory",
        sender,
        target,
        shape="caption",
        members=12,
        same_key="duplicate",
        read=read,
        gone=gone,
        limit=limit,
        fail_5xx=fail_5xx,
        bad_credentials=bad_credentials,
        migrated=migrated,
        uncounted=Target("memory", "g-uncounted"),
        break_after_first=break_after_first,
    )


async def telegram(server: Running, sim: Sim) -> Harness:
    await sim.call(
        "POST",
        "/__sim/chats",
        json=[{"id": TG_CHAT, "type": "supergroup", "title": "CNS_Xã Mù Cả", "members": 42}],
    )
    target = Target("telegram", str(TG_CHAT), "CNS_Xã Mù Cả")

    async def read() -> list[Delivered]:
        return [
            Delivered(
                str(m["message_id"]),
                m.get("text", m.get("caption")),
                tuple(kind for kind in ("photo", "document") if kind in m),
                bool(m.get("deleted")),
            )
            for m in await sim.call("GET", "/__sim/messages")
            if m["chat"]["id"] == TG_CHAT
        ]

    async def gone() -> Target:
        await sim.call(
            "POST",
            "/__sim/chats",
            json=[{"id": -1001000000002, "type": "supergroup", "bot_status": "kicked"}],
        )
        return Target("telegram", "-1001000000002")

    async def limit() -> None:
        # 1 message per minute in the group, and one sent (straight to the Bot API) to use it up.
        await sim.call("POST", "/__sim/limits", json={"per_bot": 30, "per_group": 1})
        sent = await sim.call(
            "POST", f"/bot{TG_TOKEN}/sendMessage", json={"chat_id": TG_CHAT, "text": "trước"}
        )
        assert sent["ok"]

    async def fail_5xx() -> None:
        await sim.call("POST", "/__sim/faults", json=FAULTS_5XX)

    async def bad_credentials() -> Sender:
        return TelegramSender(Secret("987654321:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), base_url=server.url)

    async def break_after_first() -> None:
        await sim.call("POST", "/__sim/faults", json=break_on_second("sendMessage"))

    async def migrated() -> tuple[Target, str]:
        await sim.call("POST", "/__sim/chats", json=[{"id": -4001, "type": "group", "migrated_to": -1009999}])
        return Target("telegram", "-4001"), "-1009999"

    return Harness(
        "telegram",
        TelegramSender(Secret(TG_TOKEN), base_url=server.url),
        target,
        shape="caption",
        members=42,
        same_key="duplicate",
        fmt="html",
        cannot={"uncounted": "getChatMemberCount always gives a number for a chat the bot is in"},
        read=read,
        gone=gone,
        limit=limit,
        fail_5xx=fail_5xx,
        bad_credentials=bad_credentials,
        migrated=migrated,
        break_after_first=break_after_first,
    )


async def zalo(server: Running, sim: Sim, tmp_path: Path) -> Harness:
    state = server.app[zalo_box.STATE]
    await sim.call("POST", "/__sim/groups", json={ZALO_GROUP: {"name": "CNS_Xã Mù Cả", "members": 57}})
    pair = await sim.call("GET", "/__sim/tokens")  # what the OA admin's consent gives

    async def store(name: str, access: str, refresh: str) -> FileTokenStore:
        tokens = FileTokenStore(tmp_path / name)
        await tokens.save(OAuthTokens(access, refresh, time.time() + 90_000))
        return tokens

    def sender(tokens: FileTokenStore) -> ZaloSender:
        return ZaloSender(
            tokens,
            app_id=state.app_id,
            app_secret=Secret(state.app_secret),
            base_url=server.url,
            oauth_url=server.url,
        )

    async def read() -> list[Delivered]:
        out = []
        for m in await sim.call("GET", "/__sim/messages"):
            if m.get("group_id") != ZALO_GROUP:
                continue
            attachment = m["message"].get("attachment") or {}
            elements = (attachment.get("payload") or {}).get("elements") or []
            media = tuple("photo" for e in elements if e.get("media_type") == "image")
            out.append(Delivered(m["message_id"], m["message"].get("text"), media))
        return out

    async def gone() -> Target:
        await sim.call("POST", "/__sim/groups", json={"gmf-off": {"status": "disabled"}})
        return Target("zalo", "gmf-off")

    async def limit() -> None:
        # The sandbox has no control call for it: one call per minute for the app, and one made
        # (straight to the API) to use it up.
        state.per_minute = 1
        answer = await sim.call("GET", "/v2.0/oa/getoa", headers={"access_token": pair["access_token"]})
        assert answer["error"] == 0

    async def fail_5xx() -> None:
        await sim.call("POST", "/__sim/faults", json=FAULTS_5XX)

    async def bad_credentials() -> Sender:
        return sender(await store("refused.json", "not-a-token", "not-a-refresh-token"))

    async def break_after_first() -> None:
        await sim.call("POST", "/__sim/faults", json=break_on_second("/group/message"))

    return Harness(
        "zalo",
        sender(await store("zalo-oa.json", pair["access_token"], pair["refresh_token"])),
        Target("zalo", ZALO_GROUP, "CNS_Xã Mù Cả"),
        shape="chat",
        members=57,
        same_key="duplicate",
        can_edit=False,
        can_delete=False,
        cannot={"migrated": "Zalo GMF groups do not move to a new id"},
        read=read,
        gone=gone,
        limit=limit,
        fail_5xx=fail_5xx,
        bad_credentials=bad_credentials,
        uncounted=Target("zalo", "2512523625412515", "Lò Văn Pọm", kind="user"),  # a follower
        break_after_first=break_after_first,
    )


async def facebook(server: Running, sim: Sim) -> Harness:
    state = server.app[fb_box.STATE]
    await sim.call(
        "POST", "/__sim/pages", json={FB_PAGE: {"token": FB_TOKEN, "name": "Sở KH&CN", "followers": 3456}}
    )

    async def read() -> list[Delivered]:
        out = []
        for post_id, post in (await sim.call("GET", "/__sim/posts")).items():
            if not post_id.startswith(f"{FB_PAGE}_"):
                continue
            media = (
                ("photo",) if post.get("photo") else tuple("photo" for _ in post.get("attached_media") or ())
            )
            out.append(Delivered(post_id, post.get("message"), media))  # a deleted post is gone
        return out

    async def gone() -> Target:
        # A Page that is gone for this token answers 100/33 (deleting the Page would also void the
        # token, which is AuthFailed instead).
        return Target("facebook", "104857600999999")

    async def limit() -> None:
        # The sandbox has no control call for it: a Business Use Case budget of one call, and one made
        # (straight to the Graph API) to use it up.
        state.budget = 1
        state.pages[FB_PAGE].calls.clear()
        page = await sim.call(
            "GET", f"/v23.0/{FB_PAGE}", params={"fields": "followers_count", "access_token": FB_TOKEN}
        )
        assert page["id"] == FB_PAGE

    async def fail_5xx() -> None:
        await sim.call("POST", "/__sim/faults", json=FAULTS_5XX)

    async def bad_credentials() -> Sender:
        return FacebookSender(Secret("wrong-token"), base_url=server.url, version="v23.0")

    return Harness(
        "facebook",
        FacebookSender(Secret(FB_TOKEN), base_url=server.url, version="v23.0"),
        Target("facebook", FB_PAGE, "Sở KH&CN Lai Châu"),
        shape="post",
        members=3456,
        same_key="refused",
        cannot={
            "break_after_first": "one post per delivery: nothing to resume inside it",
            "uncounted": "the Graph API always gives followers_count for the Page",
            "migrated": "a Page does not move to a new id",
        },
        read=read,
        gone=gone,
        limit=limit,
        fail_5xx=fail_5xx,
        bad_credentials=bad_credentials,
    )


async def webhook(server: Running, sim: Sim) -> Harness:
    state = server.app[wh_box.STATE]
    await sim.call("POST", "/__sim/targets", json={"grp-1": {"members": 37}})

    async def read() -> list[Delivered]:
        return [
            Delivered(
                mid,
                m["edits"][-1] if m["edits"] else m["data"]["text"],
                tuple(a["type"] for a in m["data"]["attachments"]),
                m["deleted"],
            )
            for mid, m in (await sim.call("GET", "/__sim/messages")).items()
            if m["target"] == "grp-1"
        ]

    async def gone() -> Target:
        await sim.call("POST", "/__sim/targets", json={"grp-gone": {"status": "gone"}})
        return Target("webhook", "grp-gone")

    async def limit() -> None:
        # The sandbox has no control call for it: one message a minute, already used.
        state.window = SlidingWindow(1, 60.0)
        state.window.hit()

    async def fail_5xx() -> None:
        await sim.call("POST", "/__sim/faults", json=FAULTS_5XX)

    async def bad_credentials() -> Sender:
        other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes!!!!!!").decode()
        return WebhookSender(server.url, Secret(other))

    return Harness(
        "webhook",
        WebhookSender(server.url, Secret(WH_SECRET)),
        Target("webhook", "grp-1", "CNS_Bản Mù Cả_Xã Mù Cả"),
        shape="post",
        members=37,
        same_key="dedupe",
        cannot={
            "break_after_first": "one post per delivery: nothing to resume inside it",
            "uncounted": "the gateway's target query always carries member_count",
            "migrated": "the webhook contract has no migration answer",
        },
        read=read,
        gone=gone,
        limit=limit,
        fail_5xx=fail_5xx,
        bad_credentials=bad_credentials,
    )


def sandbox_app(name: str) -> Any:
    if name == "telegram":
        return tg_box.create_app([TG_TOKEN], auto_chats=False)
    if name == "zalo":
        return zalo_box.create_app(auto_groups=False)
    if name == "facebook":
        return fb_box.create_app()
    return wh_box.create_app(WH_SECRET, auto_targets=False)


def knobs_missing(h: Harness) -> dict[str, str]:
    """Every knob a harness does not provide must say why (so a test skips with that reason)."""
    have = {
        "gone": h.gone,
        "limit": h.limit,
        "fail_5xx": h.fail_5xx,
        "bad_credentials": h.bad_credentials,
        "migrated": h.migrated,
        "uncounted": h.uncounted,
    }
    return {k: "missing" for k, v in have.items() if v is None and k not in h.cannot}
