"""Telegram Bot API updates (``setWebhook`` with a ``secret_token``).

Telegram sends one ``Update`` per request with ``X-Telegram-Bot-Api-Secret-Token``; ``update_id`` is the
de-duplication key. Used: replies (``reply_to_message``), reactions (``message_reaction``, per person;
``message_reaction_count``, anonymous totals in channels), the bot removed or added
(``my_chat_member``) and group -> supergroup migration (``migrate_to_chat_id``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from adapters.hooks.common import epoch, header, ident, json_object, obj, text
from broadcaster.domain.errors import BadPayload, BadSignature
from broadcaster.domain.ports import Signal

HEADER = "x-telegram-bot-api-secret-token"
GONE = {"left", "kicked"}
PRESENT = {"member", "administrator", "creator", "restricted"}


class TelegramHooks:
    platform = "telegram"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, settings: Mapping[str, Any], now: float
    ) -> str:
        received = header(headers, HEADER)
        if not secret or not hmac.compare_digest(received.encode(), secret.encode()):
            raise BadSignature("missing or wrong X-Telegram-Bot-Api-Secret-Token")
        update_id = json_object(body).get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise BadPayload("an update without an integer update_id")
        return f"u{update_id}"

    def parse(self, body: bytes) -> list[Signal]:
        update = json_object(body)
        for kind in ("message", "channel_post"):
            if kind in update:
                return _message(obj(update[kind]))
        if "message_reaction" in update:
            return _reaction(obj(update["message_reaction"]))
        if "message_reaction_count" in update:
            return _reaction_count(obj(update["message_reaction_count"]))
        if "my_chat_member" in update:
            return _membership(obj(update["my_chat_member"]))
        return []

    def challenge(self, query: Mapping[str, str], verify_token: str) -> str | None:
        return None  # no subscription handshake on this platform


def _message(message: dict[str, Any]) -> list[Signal]:
    chat = obj(message.get("chat"))
    chat_id = ident(chat.get("id"))
    at = epoch(message.get("date"))
    if chat_id is None:
        return []
    if "migrate_to_chat_id" in message:
        new_id = ident(message.get("migrate_to_chat_id"))
        return [Signal("migrated", chat_id=chat_id, value=new_id, at=at)] if new_id else []
    original = obj(message.get("reply_to_message"))
    replied_to = ident(original.get("message_id"))
    if replied_to is None:
        return []
    sender = obj(message.get("from")) or obj(message.get("sender_chat"))
    if sender.get("is_bot") is True:
        return []  # other bots (and our own echoes) are not people
    return [
        Signal(
            "reply",
            chat_id=chat_id,
            message_id=replied_to,
            user_id=ident(sender.get("id")),
            text=text(message.get("text")) or text(message.get("caption")) or "",
            external_id=ident(message.get("message_id")),
            title=text(chat.get("title"), 255),
            at=at,
        )
    ]


def _emoji(reactions: object) -> str | None:
    if not isinstance(reactions, list) or not reactions:
        return None
    first = obj(reactions[0])
    value = first.get("emoji") or first.get("custom_emoji_id") or first.get("type")
    return text(value, 64)


def _reaction(update: dict[str, Any]) -> list[Signal]:
    chat_id = ident(obj(update.get("chat")).get("id"))
    message_id = ident(update.get("message_id"))
    if chat_id is None or message_id is None:
        return []
    old, new = _emoji(update.get("old_reaction")), _emoji(update.get("new_reaction"))
    count = (new is not None) - (old is not None)
    person = obj(update.get("user")) or obj(update.get("actor_chat"))
    return [
        Signal(
            "reaction",
            chat_id=chat_id,
            message_id=message_id,
            user_id=ident(person.get("id")),
            value=new or old,
            count=count,
            at=epoch(update.get("date")),
        )
    ]


def _reaction_count(update: dict[str, Any]) -> list[Signal]:
    chat_id = ident(obj(update.get("chat")).get("id"))
    message_id = ident(update.get("message_id"))
    reactions = update.get("reactions")
    if chat_id is None or message_id is None or not isinstance(reactions, list):
        return []
    total = 0
    for item in reactions:
        count = obj(item).get("total_count")
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            total += count
    return [
        Signal(
            "reaction_count",
            chat_id=chat_id,
            message_id=message_id,
            count=total,
            at=epoch(update.get("date")),
        )
    ]


def _membership(update: dict[str, Any]) -> list[Signal]:
    chat = obj(update.get("chat"))
    chat_id = ident(chat.get("id"))
    old = obj(update.get("old_chat_member")).get("status")
    new = obj(update.get("new_chat_member")).get("status")
    if chat_id is None:
        return []
    title, at = text(chat.get("title"), 255), epoch(update.get("date"))
    if new in GONE and old not in GONE:
        return [Signal("bot_removed", chat_id=chat_id, title=title, at=at)]
    if new in PRESENT and (old in GONE or old is None):
        return [Signal("bot_added", chat_id=chat_id, title=title, at=at)]
    return []


CODEC = TelegramHooks()
