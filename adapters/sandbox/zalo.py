"""A sandbox Zalo OA Open API (and its OAuth server) that answers like Zalo does.

Always HTTP 200 with ``{"error": int, "message": str, "data"?}`` (see platforms.md §2.3, §6.2); header
``access_token`` on every call (-216 unknown, -220 expired); OAuth refresh at ``/v4/oa/access_token``
with single-use refresh tokens (a second use fails, and the previous access token stops working);
GMF group messages (-403 OA not in group, -237 group disabled, -210 text over 2000), follower
messages (-213 not a follower), image upload (1 MB), group info, -32 when the app exceeds its calls per
minute, seeded faults, and members who reply in groups, posted to a webhook URL with
``X-ZEvent-Signature: mac=sha256(app_id + body + timestamp + oa_secret)``. Control API under ``/__sim``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.sandbox.common import Emitter, FaultConfig, Faults, SlidingWindow, fault_middleware

TEXT_LIMIT = 2000
IMAGE_LIMIT = 1024 * 1024
ACCESS_TTL = 90_000.0  # 25 h
MESSAGES = {
    -32: "Your application reached limit call api",
    -100: "attachment_id was expired",
    -201: "{field} is invalid!",
    -210: "Parameter exceeds allowable limit",
    -213: "User has not followed OA",
    -216: "Access token is invalid",
    -220: "access_token is expired or removed",
    -237: "The group is disabled",
    -403: "OA is not in group",
}


@dataclass(slots=True)
class ZaloGroup:
    name: str = ""
    status: str = "enabled"  # enabled | disabled
    owned: bool = True
    members: int = 30


@dataclass(slots=True)
class ZaloState:
    app_id: str = "1234567890123456789"
    app_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    oa_id: str = "579745863508352884"
    oa_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    access: dict[str, float] = field(default_factory=dict)  # token -> expiry (state clock)
    refresh: set[str] = field(default_factory=set)  # unused refresh tokens
    pair_of: dict[str, str] = field(default_factory=dict)  # refresh token -> access token issued with it
    groups: dict[str, ZaloGroup] = field(default_factory=dict)
    followers: set[str] = field(default_factory=set)
    auto_groups: bool = True
    attachments: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    per_minute: int | None = 4000
    window: SlidingWindow | None = None
    faults: Faults = field(default_factory=Faults)
    clock_offset: float = 0.0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    rng: random.Random = field(default_factory=lambda: random.Random(5))
    webhook_url: str = ""
    reply_rate: float = 0.0
    refreshes: int = 0
    emitter: Emitter = field(default_factory=lambda: Emitter(timeout=2.0))

    def now(self) -> float:
        return time.time() + self.clock_offset

    def issue(self) -> dict[str, str]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = self.now() + ACCESS_TTL
        self.refresh.add(refresh)
        self.pair_of[refresh] = access
        return {"access_token": access, "refresh_token": refresh, "expires_in": str(int(ACCESS_TTL))}


STATE = web.AppKey("zalo_state", ZaloState)


def _answer(code: int, data: dict[str, Any] | None = None, fmt: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {
        "error": code,
        "message": MESSAGES.get(code, "Error").format(**(fmt or {})) if code else "Success",
    }
    if data is not None:
        body["data"] = data
    return web.json_response(body)  # always 200, as Zalo does


class ZaloFailure(Exception):
    def __init__(self, code: int, **fmt: str) -> None:
        super().__init__(code)
        self.code, self.fmt = code, fmt


def _authorise(state: ZaloState, request: web.Request) -> None:
    token = request.headers.get("access_token", "")
    expiry = state.access.get(token)
    if expiry is None:
        raise ZaloFailure(-216)
    if expiry <= state.now():
        raise ZaloFailure(-220)
    if state.per_minute:
        if state.window is None or state.window.limit != state.per_minute:
            state.window = SlidingWindow(state.per_minute, 60.0)
        if state.window.hit() > 0:
            raise ZaloFailure(-32)


async def oauth_token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = await request.post()
    if request.headers.get("secret_key") != state.app_secret or form.get("app_id") != state.app_id:
        return web.json_response(
            {"error": -14003, "error_name": "Invalid app", "error_reason": "app_id or secret"}
        )
    if form.get("grant_type") != "refresh_token":
        return web.json_response({"error": -14001, "error_name": "Invalid grant_type"})
    token = str(form.get("refresh_token", ""))
    if token not in state.refresh:
        return web.json_response(
            {
                "error": -14014,
                "error_name": "Invalid refresh token",
                "error_reason": "refresh_token is invalid or already used",
            }
        )
    state.refresh.discard(token)
    state.access.pop(state.pair_of.pop(token, ""), None)  # the previous access token stops working
    state.refreshes += 1
    return web.json_response(state.issue())


def _group(state: ZaloState, group_id: str) -> ZaloGroup:
    group = state.groups.get(group_id)
    if group is None and state.auto_groups and group_id:
        group = state.groups[group_id] = ZaloGroup(members=state.rng.randint(10, 200))
    if group is None or not group.owned:
        raise ZaloFailure(-403)
    if group.status != "enabled":
        raise ZaloFailure(-237)
    return group


def _message_body(state: ZaloState, message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise ZaloFailure(-201, field="message")
    text = message.get("text")
    attachment = message.get("attachment")
    if text is None and attachment is None:
        raise ZaloFailure(-201, field="message")
    if text is not None and (not isinstance(text, str) or len(text) > TEXT_LIMIT):
        raise ZaloFailure(-210)
    if attachment is not None:
        elements = (((attachment or {}).get("payload") or {}).get("elements")) or []
        for element in elements:
            if element.get("attachment_id") and element["attachment_id"] not in state.attachments:
                raise ZaloFailure(-100)
    return message


async def api(request: web.Request) -> web.Response:
    state = request.app[STATE]
    path = request.match_info["path"]
    try:
        _authorise(state, request)
        handler = ROUTES.get((request.method, path))
        if handler is None:
            raise ZaloFailure(-201, field="api")
        return await handler(state, request)
    except ZaloFailure as failure:
        return _answer(failure.code, fmt=failure.fmt)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ZaloFailure(-201, field="body") from None
    if not isinstance(body, dict):
        raise ZaloFailure(-201, field="body")
    return body


async def group_message(state: ZaloState, request: web.Request) -> web.Response:
    body = await _json(request)
    group_id = str((body.get("recipient") or {}).get("group_id", ""))
    _group(state, group_id)
    message = _message_body(state, body.get("message"))
    message_id = f"{next(state.ids):020x}"
    state.messages.append({"message_id": message_id, "group_id": group_id, "message": message})
    _maybe_reply(state, group_id, message_id)
    return _answer(0, {"message_id": message_id, "group_id": group_id})


async def follower_message(state: ZaloState, request: web.Request) -> web.Response:
    body = await _json(request)
    user_id = str((body.get("recipient") or {}).get("user_id", ""))
    if user_id not in state.followers:
        raise ZaloFailure(-213)
    message = _message_body(state, body.get("message"))
    message_id = f"{next(state.ids):020x}"
    state.messages.append({"message_id": message_id, "user_id": user_id, "message": message})
    return _answer(
        0, {"message_id": message_id, "user_id": user_id, "sent_time": str(int(state.now() * 1000))}
    )


async def upload_image(state: ZaloState, request: web.Request) -> web.Response:
    if request.content_type != "multipart/form-data":
        raise ZaloFailure(-201, field="file")
    reader = await request.multipart()
    data = b""
    ctype = ""
    while (part := await reader.next()) is not None:
        if isinstance(part, aiohttp.BodyPartReader) and part.name == "file":
            data = bytes(await part.read())
            ctype = part.headers.get("Content-Type", "")
    if not data or ctype not in {"image/jpeg", "image/png"}:
        raise ZaloFailure(-201, field="file")
    if len(data) > IMAGE_LIMIT:
        raise ZaloFailure(-210)
    attachment = secrets.token_hex(12)
    state.attachments.add(attachment)
    return _answer(0, {"attachment_id": attachment})


async def group_info(state: ZaloState, request: web.Request) -> web.Response:
    group_id = request.query.get("group_id", "")
    group = state.groups.get(group_id)
    if group is None or not group.owned:
        raise ZaloFailure(-403)
    return _answer(
        0,
        {
            "group_info": {
                "group_id": group_id,
                "name": group.name,
                "status": group.status,
                "total_member": group.members,
                "max_member": 100,
            }
        },
    )


async def get_oa(state: ZaloState, request: web.Request) -> web.Response:
    return _answer(
        0,
        {
            "oaid": state.oa_id,
            "name": "Sở KH&CN tỉnh Lai Châu (sandbox)",
            "is_verified": True,
            "num_follower": len(state.followers),
            "package_name": "Nâng cao",
        },
    )


ROUTES = {
    ("POST", "v3.0/oa/group/message"): group_message,
    ("POST", "v3.0/oa/message/cs"): follower_message,
    ("POST", "v2.0/oa/upload/image"): upload_image,
    ("GET", "v3.0/oa/group/getgroup"): group_info,
    ("GET", "v2.0/oa/getoa"): get_oa,
}


def event_signature(state: ZaloState, body: bytes, timestamp: str) -> str:
    return (
        "mac="
        + hashlib.sha256(
            state.app_id.encode() + body + timestamp.encode() + state.oa_secret.encode()
        ).hexdigest()
    )


def _maybe_reply(state: ZaloState, group_id: str, message_id: str) -> None:
    if not state.webhook_url or state.rng.random() >= state.reply_rate:
        return
    timestamp = str(int(state.now() * 1000))
    event = {
        "app_id": state.app_id,
        "event_name": "user_send_group_text",
        "timestamp": timestamp,
        "sender": {"id": str(8_000_000 + state.rng.randint(1, 9999))},
        "recipient": {"id": group_id},
        "message": {
            "msg_id": secrets.token_hex(10),
            "text": "Đã đọc, cảm ơn OA",
            "quote_msg": {"msg_id": message_id},
        },
    }
    state.emitter.spawn(_post_event(state, event))


async def _post_event(state: ZaloState, event: dict[str, Any]) -> None:
    body = json.dumps(event, ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "X-ZEvent-Signature": event_signature(state, body, str(event["timestamp"])),
    }
    # Real Zalo retries after 30 s, 5 min, ...: scaled down for the sandbox.
    await state.emitter.post(state.webhook_url, body, headers, (0.0, 0.5, 2.0))


async def sim_tokens(request: web.Request) -> web.Response:
    """GET: a fresh authorised pair (what the OA admin's consent would give). POST {"advance": s}: move
    the clock forward (expire access tokens)."""
    state = request.app[STATE]
    if request.method == "POST":
        state.clock_offset += float((await request.json()).get("advance", 0))
        return web.json_response({"clock_offset": state.clock_offset})
    return web.json_response(state.issue())


async def sim_groups(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for group_id, spec in (await request.json()).items():
        state.groups[group_id] = ZaloGroup(
            spec.get("name", ""),
            spec.get("status", "enabled"),
            spec.get("owned", True),
            int(spec.get("members", 30)),
        )
    return web.json_response({"groups": len(state.groups)})


async def sim_messages(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].messages)


async def sim_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.configure(FaultConfig(**await request.json()))
    return web.json_response({"ok": True})


async def _close(app: web.Application) -> None:
    await app[STATE].emitter.close()


def create_app(
    *,
    per_minute: int | None = 4000,
    faults: FaultConfig | None = None,
    auto_groups: bool = True,
    reply_rate: float = 0.0,
    webhook_url: str = "",
) -> web.Application:
    state = ZaloState(
        per_minute=per_minute, auto_groups=auto_groups, reply_rate=reply_rate, webhook_url=webhook_url
    )
    if faults is not None:
        state.faults.configure(faults)
    app = web.Application(middlewares=[fault_middleware(state.faults)], client_max_size=8 * 1024 * 1024)
    app[STATE] = state
    app.router.add_post("/v4/oa/access_token", oauth_token)
    app.router.add_route("*", "/__sim/tokens", sim_tokens)
    app.router.add_post("/__sim/groups", sim_groups)
    app.router.add_get("/__sim/messages", sim_messages)
    app.router.add_post("/__sim/faults", sim_faults)
    app.router.add_route("*", "/{path:v[23]\\.0/oa/.+}", api)
    app.on_cleanup.append(_close)
    return app
