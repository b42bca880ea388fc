"""A sandbox Telegram Bot API server that python-telegram-bot cannot tell from the real one.

Wire behaviour follows tdlib's telegram-bot-api (see shared/reference/platforms.md §1 and §6.1):
``/bot<token>/<method>`` with query, form, JSON or multipart parameters (PTB's JSON-encoded values
coerced), ``{"ok": true, "result": ...}`` on success and ``{"ok": false, "error_code", "description",
"parameters"?}`` with the HTTP status equal to ``error_code`` on failure (never 200 with ok=false).

Modelled: bots by token; chats (group, supergroup, channel) with the bot's status, members, deletion
and group -> supergroup migration; sendMessage/Photo/Document/MediaGroup, editMessageText/Caption/Media,
deleteMessage, getChatMemberCount, getChat, setWebhook/deleteWebhook/getWebhookInfo, getUpdates (409
while a webhook is set); HTML entity parsing and the 4096/1024 limits in UTF-16 units; flood control
(30 messages/s per bot, 20/min per group; 429 with retry_after, kept until it elapses); seeded faults;
simulated members who reply and react, delivered to the bot's webhook with its secret token.
Control API under ``/__sim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.sandbox.common import FaultConfig, Faults, SlidingWindow, fault_middleware
from adapters.sandbox.telegram_html import EntityError, utf16_len, visible_text

TOKEN_RE = re.compile(r"^\d{3,12}:[A-Za-z0-9_-]{10,}$")
JSON_FIELDS = {
    "media",
    "reply_markup",
    "reply_parameters",
    "link_preview_options",
    "allowed_updates",
    "entities",
    "caption_entities",
}
SEND_METHODS = {"sendmessage", "sendphoto", "senddocument", "sendmediagroup"}
REPLIES = (
    "Đã nhận, cảm ơn!",
    "Cho hỏi thủ tục này làm ở đâu ạ?",
    "Bản mình đã làm được rồi 👍",
    "Nhờ cán bộ hướng dẫn thêm ạ",
)


@dataclass(slots=True)
class Chat:
    id: int
    type: str = "supergroup"  # private | group | supergroup | channel
    title: str = ""
    bot_status: str = "member"  # member | administrator | left | kicked
    members: int = 25
    deleted: bool = False
    migrated_to: int | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title or f"Chat {self.id}", "type": self.type}


@dataclass(slots=True)
class Limits:
    per_bot: int | None = 30  # messages per second per bot
    per_group: int | None = 20  # messages per minute per group
    enabled: bool = True


@dataclass(slots=True)
class Members:
    """Simulated people in the groups: after a post, some reply and some react."""

    reply_rate: float = 0.0
    react_rate: float = 0.0
    delay: float = 0.05


@dataclass(slots=True)
class BotState:
    id: int
    token: str
    username: str
    webhook_url: str = ""
    webhook_secret: str = ""
    allowed_updates: list[str] = field(default_factory=list)
    window: SlidingWindow | None = None
    blocked_until: float = 0.0


@dataclass(slots=True)
class TelegramState:
    bots: dict[str, BotState] = field(default_factory=dict)
    chats: dict[int, Chat] = field(default_factory=dict)
    auto_chats: bool = True
    auto_bots: bool = False  # accept any well-formed token as a bot (cns sandbox, benchmarks)
    limits: Limits = field(default_factory=Limits)
    members: Members = field(default_factory=Members)
    faults: Faults = field(default_factory=Faults)
    messages: list[dict[str, Any]] = field(default_factory=list)  # every message, in order
    by_chat: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    group_windows: dict[int, SlidingWindow] = field(default_factory=dict)
    group_blocked: dict[int, float] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    message_ids: dict[int, itertools.count[int]] = field(default_factory=dict)
    update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(900_001))
    media_groups: itertools.count[int] = field(default_factory=lambda: itertools.count(13_000_000_000))
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # webhook updates delivered
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    session: aiohttp.ClientSession | None = None
    rejected_429: int = 0

    def add_bot(self, token: str, username: str = "cns_sandbox_bot") -> BotState:
        bot = BotState(id=int(token.split(":", 1)[0]), token=token, username=username)
        self.bots[token] = bot
        return bot


STATE = web.AppKey("telegram_state", TelegramState)


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, int] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def _error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.code)


async def _params(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes, str]]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, tuple[str, bytes, str]] = {}
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON object") from None
            if isinstance(body, dict):
                params.update(body)
        elif ctype == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                data = await part.read()
                if part.filename:
                    files[part.name] = (part.filename, bytes(data), part.headers.get("Content-Type", ""))
                else:
                    params[part.name] = data.decode()
        else:
            params.update(await request.post())
    for key in JSON_FIELDS & params.keys():
        if isinstance(params[key], str):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params, files


def _int(params: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise ApiError(
                400, f"Bad Request: {key} is empty" if key != "chat_id" else "Bad Request: chat_id is empty"
            )
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {key} specified") from None


def _chat_for_send(state: TelegramState, params: dict[str, Any]) -> Chat:
    chat_id = _int(params, "chat_id")
    assert chat_id is not None
    chat = state.chats.get(chat_id)
    if chat is None:
        if not state.auto_chats or chat_id >= 0:
            raise ApiError(400, "Bad Request: chat not found")
        chat = state.chats[chat_id] = Chat(
            chat_id,
            "supergroup" if str(chat_id).startswith("-100") else "group",
            members=state.rng.randint(12, 300),
        )
    if chat.type == "private":
        if chat.bot_status == "kicked":
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat
    kind = {"group": "group chat", "supergroup": "supergroup chat", "channel": "channel chat"}[chat.type]
    if chat.migrated_to is not None:
        raise ApiError(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": chat.migrated_to},
        )
    if chat.deleted:
        raise ApiError(403, f"Forbidden: the {kind} was deleted")
    if chat.bot_status == "kicked":
        raise ApiError(403, f"Forbidden: bot was kicked from the {kind}")
    if chat.bot_status == "left":
        raise ApiError(403, f"Forbidden: bot is not a member of the {kind}")
    if chat.type == "channel" and chat.bot_status != "administrator":
        raise ApiError(400, "Bad Request: need administrator rights in the channel chat")
    return chat


def _flood(state: TelegramState, bot: BotState, chat: Chat, count: int = 1) -> None:
    """Per-bot and per-group flood control; once tripped, 429 until retry_after has elapsed."""
    if not state.limits.enabled:
        return
    now = time.monotonic()
    blocked = max(bot.blocked_until, state.group_blocked.get(chat.id, 0.0))
    if blocked > now:
        state.rejected_429 += 1
        left = math.ceil(blocked - now)
        raise ApiError(429, f"Too Many Requests: retry after {left}", {"retry_after": left})
    waits = []
    if state.limits.per_bot:
        if bot.window is None or bot.window.limit != state.limits.per_bot:
            bot.window = SlidingWindow(state.limits.per_bot, 1.0)
        waits.append(("bot", max(bot.window.hit() for _ in range(count))))
    if state.limits.per_group and chat.type != "channel":
        window = state.group_windows.setdefault(chat.id, SlidingWindow(state.limits.per_group, 60.0))
        waits.append(("group", max(window.hit() for _ in range(count))))
    for scope, wait in waits:
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            if scope == "bot":
                bot.blocked_until = now + seconds
            else:
                state.group_blocked[chat.id] = now + seconds
            state.rejected_429 += 1
            raise ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})


def _checked_text(text: Any, parse_mode: Any, limit: int, what: str) -> tuple[str, str]:
    raw = "" if text is None else str(text)
    shown = raw
    if str(parse_mode or "").upper() == "HTML":
        try:
            shown = visible_text(raw)
        except EntityError as exc:
            raise ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
    if what == "text" and not shown.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if utf16_len(shown) > limit:
        raise ApiError(
            400,
            "Bad Request: message is too long"
            if what == "text"
            else "Bad Request: message caption is too long",
        )
    return raw, shown


def _new_message(state: TelegramState, bot: BotState, chat: Chat, **content: Any) -> dict[str, Any]:
    counter = state.message_ids.setdefault(chat.id, itertools.count(1))
    message: dict[str, Any] = {
        "message_id": next(counter),
        "date": int(time.time()),
        "chat": chat.public(),
        **content,
    }
    if chat.type == "channel":
        message["sender_chat"] = chat.public()
    else:
        message["from"] = {"id": bot.id, "is_bot": True, "first_name": "CNS", "username": bot.username}
    state.messages.append(message)
    state.by_chat.setdefault(chat.id, {})[message["message_id"]] = message
    return message


def _media_field(
    params: dict[str, Any], files: dict[str, tuple[str, bytes, str]], name: str
) -> dict[str, Any]:
    if name in files:
        filename, data, mime = files[name]
        if not data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        return {"file_name": filename, "mime_type": mime, "file_size": len(data)}
    value = params.get(name)
    if isinstance(value, str) and value.startswith("attach://"):
        ref = value.removeprefix("attach://")
        if ref not in files:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return _media_field(params, files, ref)
    if isinstance(value, str) and value:
        return {"file_name": value.rsplit("/", 1)[-1], "mime_type": "", "file_size": 0}
    raise ApiError(400, f"Bad Request: there is no {name} in the request")


def _file_obj(kind: str, info: dict[str, Any], unique: int) -> Any:
    base = {"file_id": f"{kind}-{unique}", "file_unique_id": f"u{unique}", "file_size": info["file_size"]}
    if kind == "photo":
        return [{**base, "width": 1280, "height": 720}]
    return {
        **base,
        "file_name": info["file_name"],
        "mime_type": info["mime_type"] or "application/octet-stream",
    }


async def _send(
    state: TelegramState,
    bot: BotState,
    method: str,
    params: dict[str, Any],
    files: dict[str, tuple[str, bytes, str]],
) -> Any:
    chat = _chat_for_send(state, params)
    if method == "sendmediagroup":
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: wrong number of media in the group (must be 2-10)")
        kinds = {m.get("type") for m in media if isinstance(m, dict)}
        if len(kinds) > 1 and kinds & {"document", "audio"}:
            raise ApiError(400, "Bad Request: documents can't be mixed with other media types")
        _flood(state, bot, chat, len(media))
        group_id = str(next(state.media_groups))
        out = []
        for i, item in enumerate(media):
            info = _media_field({"media": item.get("media")}, files, "media")
            caption, _ = _checked_text(item.get("caption"), item.get("parse_mode"), 1024, "caption")
            kind = "photo" if item.get("type") == "photo" else "document"
            content: dict[str, Any] = {
                kind: _file_obj(kind, info, len(state.messages) + i),
                "media_group_id": group_id,
            }
            if caption:
                content["caption"] = caption
            out.append(_new_message(state, bot, chat, **content))
        return out
    if method == "sendmessage":
        text, _ = _checked_text(params.get("text"), params.get("parse_mode"), 4096, "text")
        _flood(state, bot, chat)
        message = _new_message(state, bot, chat, text=text)
    else:
        kind = "photo" if method == "sendphoto" else "document"
        info = _media_field(params, files, kind)
        if kind == "photo" and info["file_size"] > 10 * 1024 * 1024:
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        if info["file_size"] > 50 * 1024 * 1024:
            raise ApiError(413, "Request Entity Too Large")
        caption, _ = _checked_text(params.get("caption"), params.get("parse_mode"), 1024, "caption")
        _flood(state, bot, chat)
        content = {kind: _file_obj(kind, info, len(state.messages))}
        if caption:
            content["caption"] = caption
        message = _new_message(state, bot, chat, **content)
    _schedule_members(state, bot, chat, message)
    return message


def _existing(state: TelegramState, params: dict[str, Any], what: str) -> tuple[Chat, dict[str, Any]]:
    chat_id = _int(params, "chat_id")
    message_id = _int(params, "message_id")
    chat = state.chats.get(chat_id or 0)
    if chat is None:
        raise ApiError(400, "Bad Request: chat not found")
    message = state.by_chat.get(chat.id, {}).get(message_id or 0)
    if message is None or message.get("deleted"):
        raise ApiError(400, f"Bad Request: message to {what} not found")
    return chat, message


def _get_me(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    return {
        "id": bot.id,
        "is_bot": True,
        "first_name": "CNS",
        "username": bot.username,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply "
    "markup are exactly the same as a current content and reply markup of the message"
)
MEDIA_KINDS = ("photo", "document")


def _edit(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    _, message = _existing(state, params, "edit")
    if "text" not in message:  # a photo or document: its caption is edited with editMessageCaption
        raise ApiError(400, "Bad Request: there is no text in the message to edit")
    text, _ = _checked_text(params.get("text"), params.get("parse_mode"), 4096, "text")
    if message.get("text") == text:
        raise ApiError(400, NOT_MODIFIED)
    message["text"] = text
    message["edit_date"] = int(time.time())
    return message


def _edit_caption(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    _, message = _existing(state, params, "edit")
    if not any(kind in message for kind in MEDIA_KINDS):
        raise ApiError(400, "Bad Request: there is no caption in the message to edit")
    caption, _ = _checked_text(params.get("caption"), params.get("parse_mode"), 1024, "caption")
    if message.get("caption", "") == caption:
        raise ApiError(400, NOT_MODIFIED)
    if caption:
        message["caption"] = caption
    else:
        message.pop("caption", None)
    message["edit_date"] = int(time.time())
    return message


def _edit_media(
    state: TelegramState, bot: BotState, params: dict[str, Any], files: dict[str, tuple[str, bytes, str]]
) -> Any:
    """Replaces a message's file and caption; a text message may get a file added (Bot API 7.x)."""
    _, message = _existing(state, params, "edit")
    item = params.get("media")
    if not isinstance(item, dict) or item.get("type") not in MEDIA_KINDS:
        raise ApiError(400, "Bad Request: can't parse InputMedia: media type is not specified")
    kind = str(item["type"])
    info = _media_field({"media": item.get("media")}, files, "media")
    caption, _ = _checked_text(item.get("caption"), item.get("parse_mode"), 1024, "caption")
    for old in (*MEDIA_KINDS, "text", "caption"):
        message.pop(old, None)
    message[kind] = _file_obj(kind, info, len(state.messages) + 1000)
    if caption:
        message["caption"] = caption
    message["edit_date"] = int(time.time())
    return message


def _delete(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    _, message = _existing(state, params, "delete")
    message["deleted"] = True
    return True


def _chat_info(state: TelegramState, params: dict[str, Any]) -> Chat:
    if state.auto_chats:
        return _chat_for_send(state, params)
    chat = state.chats.get(_int(params, "chat_id") or 0)
    if chat is None:
        raise ApiError(400, "Bad Request: chat not found")
    return chat


def _member_count(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    return _chat_info(state, params).members


def _get_chat(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    return _chat_info(state, params).public()


def _set_webhook(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    secret = str(params.get("secret_token", ""))
    if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise ApiError(400, "Bad Request: secret token contains unallowed characters")
    bot.webhook_url, bot.webhook_secret = str(params.get("url", "")), secret
    allowed = params.get("allowed_updates")
    if isinstance(allowed, list):
        bot.allowed_updates = [str(a) for a in allowed]
    return True


def _delete_webhook(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    bot.webhook_url = ""
    return True


def _webhook_info(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    return {
        "url": bot.webhook_url,
        "has_custom_certificate": False,
        "pending_update_count": 0,
        "allowed_updates": bot.allowed_updates or None,
    }


def _get_updates(state: TelegramState, bot: BotState, params: dict[str, Any]) -> Any:
    if bot.webhook_url:
        raise ApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
            "to delete the webhook first",
        )
    return []


METHODS = {
    "getme": _get_me,
    "editmessagetext": _edit,
    "editmessagecaption": _edit_caption,
    "deletemessage": _delete,
    "getchatmembercount": _member_count,
    "getchatmemberscount": _member_count,
    "getchat": _get_chat,
    "setwebhook": _set_webhook,
    "deletewebhook": _delete_webhook,
    "getwebhookinfo": _webhook_info,
    "getupdates": _get_updates,
}


async def _call(
    state: TelegramState,
    bot: BotState,
    method: str,
    params: dict[str, Any],
    files: dict[str, tuple[str, bytes, str]],
) -> Any:
    if method in SEND_METHODS:
        return await _send(state, bot, method, params, files)
    if method == "editmessagemedia":
        return _edit_media(state, bot, params, files)
    handler = METHODS.get(method)
    if handler is None:
        raise ApiError(404, "Not Found")
    return handler(state, bot, params)


async def api(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = request.match_info["token"]
    if not TOKEN_RE.match(token):
        return _error_response(ApiError(404, "Not Found"))
    bot = state.bots.get(token)
    if bot is None and state.auto_bots:
        bot = state.add_bot(token)
    if bot is None:
        return _error_response(ApiError(401, "Unauthorized"))
    try:
        params, files = await _params(request)
        result = await _call(state, bot, request.match_info["method"].lower(), params, files)
    except ApiError as exc:
        return _error_response(exc)
    return web.json_response({"ok": True, "result": result})


# --- simulated members and the webhook emitter ---------------------------------------------------------


def _schedule_members(state: TelegramState, bot: BotState, chat: Chat, message: dict[str, Any]) -> None:
    if not bot.webhook_url or chat.type == "channel":
        return
    if state.rng.random() < state.members.reply_rate:
        user = {
            "id": 500 + state.rng.randint(1, 400),
            "is_bot": False,
            "first_name": "Lan",
            "language_code": "vi",
        }
        reply = {
            "message_id": 0,
            "date": int(time.time()),
            "chat": chat.public(),
            "from": user,
            "text": state.rng.choice(REPLIES),
            "reply_to_message": dict(message),
        }
        _spawn(state, _deliver(state, bot, "message", reply))
    allowed = set(bot.allowed_updates)
    if (
        "message_reaction" in allowed
        and chat.bot_status == "administrator"
        and state.rng.random() < state.members.react_rate
    ):
        user = {"id": 500 + state.rng.randint(1, 400), "is_bot": False, "first_name": "Hoa"}
        reaction = {
            "chat": chat.public(),
            "message_id": message["message_id"],
            "user": user,
            "date": int(time.time()),
            "old_reaction": [],
            "new_reaction": [{"type": "emoji", "emoji": "👍"}],
        }
        _spawn(state, _deliver(state, bot, "message_reaction", reaction))


def _spawn(state: TelegramState, coro: Any) -> None:
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


async def _deliver(state: TelegramState, bot: BotState, kind: str, payload: dict[str, Any]) -> None:
    """POST one Update to the bot's webhook, exactly as Telegram does; retry non-2xx with backoff."""
    await asyncio.sleep(state.members.delay)
    if kind == "message":
        chat_id = payload["chat"]["id"]
        counter = state.message_ids.setdefault(chat_id, itertools.count(1))
        payload["message_id"] = next(counter)
    update = {"update_id": next(state.update_ids), kind: payload}
    body = json.dumps(update, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if bot.webhook_secret:
        headers["X-Telegram-Bot-Api-Secret-Token"] = bot.webhook_secret
    if state.session is None:
        state.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    delay: float = 0.2
    for _attempt in range(4):
        try:
            async with state.session.post(bot.webhook_url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    state.deliveries.append(update)
                    return
                wait = response.headers.get("Retry-After")
                delay = min(float(wait), 60.0) if wait and wait.isdigit() else delay * 2.0
        except (aiohttp.ClientError, TimeoutError):
            delay *= 2
        await asyncio.sleep(delay)


# --- control API ---------------------------------------------------------------------------------------


async def sim_chats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for spec in await request.json():
        chat = state.chats.get(int(spec["id"])) or Chat(int(spec["id"]))
        for key in ("type", "title", "bot_status", "members", "deleted", "migrated_to"):
            if key in spec:
                setattr(chat, key, spec[key])
        state.chats[chat.id] = chat
    return web.json_response({"chats": len(state.chats)})


async def sim_messages(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].messages)


async def sim_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "messages": len(state.messages),
            "rejected_429": state.rejected_429,
            "chats": len(state.chats),
            "webhook_deliveries": len(state.deliveries),
        }
    )


async def sim_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.configure(FaultConfig(**await request.json()))
    return web.json_response({"ok": True})


async def sim_limits(request: web.Request) -> web.Response:
    state = request.app[STATE]
    spec = await request.json()
    state.limits = Limits(
        per_bot=spec.get("per_bot", 30),
        per_group=spec.get("per_group", 20),
        enabled=spec.get("enabled", True),
    )
    return web.json_response({"ok": True})


async def _close(app: web.Application) -> None:
    state = app[STATE]
    for task in list(state.tasks):
        task.cancel()
    if state.tasks:
        await asyncio.gather(*state.tasks, return_exceptions=True)
    if state.session is not None:
        await state.session.close()


def create_app(
    tokens: list[str] | tuple[str, ...] = (),
    *,
    limits: Limits | None = None,
    faults: FaultConfig | None = None,
    members: Members | None = None,
    auto_chats: bool = True,
    auto_bots: bool = False,
) -> web.Application:
    state = TelegramState(
        auto_chats=auto_chats, auto_bots=auto_bots, limits=limits or Limits(), members=members or Members()
    )
    for token in tokens:
        state.add_bot(token)
    if faults is not None:
        state.faults.configure(faults)
    app = web.Application(middlewares=[fault_middleware(state.faults)], client_max_size=60 * 1024 * 1024)
    app[STATE] = state
    app.router.add_route("*", "/bot{token}/{method}", api)
    app.router.add_post("/__sim/chats", sim_chats)
    app.router.add_get("/__sim/messages", sim_messages)
    app.router.add_get("/__sim/stats", sim_stats)
    app.router.add_post("/__sim/faults", sim_faults)
    app.router.add_post("/__sim/limits", sim_limits)
    app.on_cleanup.append(_close)
    return app
