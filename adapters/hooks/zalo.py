"""Zalo OA webhook events.

Signature ``X-ZEvent-Signature: mac=<hex sha256(app_id + raw body + timestamp + OA secret key)>`` with
``app_id`` and ``timestamp`` read from the body (plain SHA-256 of the concatenation, not an HMAC; the
``mac=`` prefix is optional in the wild). Zalo redelivers the same body for about an hour, so there is
no replay window: the event key (event name + ``msg_id``, or the body's hash) de-duplicates instead.
Used: group replies (``user_send_group_*`` quoting our message), reactions to our messages, a group
deleted (the OA can no longer post).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from adapters.hooks.common import epoch, header, ident, json_object, obj, text
from broadcaster.domain.errors import BadPayload, BadSignature
from broadcaster.domain.ports import Signal

HEADER = "x-zevent-signature"


class ZaloHooks:
    platform = "zalo"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, settings: Mapping[str, Any], now: float
    ) -> str:
        received = header(headers, HEADER).strip()
        received = received.removeprefix("mac=")
        if not secret or not received:
            raise BadSignature("missing X-ZEvent-Signature")
        event = json_object(body)
        app_id, timestamp = ident(event.get("app_id")), ident(event.get("timestamp"))
        if app_id is None or timestamp is None:
            raise BadSignature("the event has no app_id or timestamp to check its signature with")
        if str(settings.get("app_id", "")) != app_id:
            raise BadSignature("the event is for another Zalo app")
        expected = hashlib.sha256(app_id.encode() + body + timestamp.encode() + secret.encode()).hexdigest()
        if not hmac.compare_digest(received.lower().encode(), expected.encode()):
            raise BadSignature("X-ZEvent-Signature does not match")
        name = text(event.get("event_name"), 64) or "event"
        msg_id = ident(obj(event.get("message")).get("msg_id"))
        return f"{name}:{msg_id}" if msg_id else f"{name}:sha256:{hashlib.sha256(body).hexdigest()[:40]}"

    def parse(self, body: bytes) -> list[Signal]:
        event = json_object(body)
        name = event.get("event_name")
        if not isinstance(name, str):
            raise BadPayload("a Zalo event without event_name")
        message = obj(event.get("message"))
        sender = ident(obj(event.get("sender")).get("id"))
        at = epoch(event.get("timestamp"), millis=True)
        if name.startswith("user_send_group_"):
            quoted = ident(obj(message.get("quote_msg")).get("msg_id"))
            return [
                Signal(
                    "reply",
                    chat_id=ident(obj(event.get("recipient")).get("id")),
                    message_id=quoted,
                    user_id=sender,
                    text=text(message.get("text")) or f"[{name.removeprefix('user_send_group_')}]",
                    external_id=ident(message.get("msg_id")),
                    at=at,
                )
            ]
        if name == "user_reacted_message":
            return [
                Signal(
                    "reaction",
                    message_id=ident(message.get("msg_id")),
                    user_id=sender,
                    value=text(message.get("react_icon"), 64),
                    at=at,
                )
            ]
        if name == "delete_group":
            group = ident(obj(event.get("group")).get("id")) or ident(event.get("group_id"))
            return [Signal("bot_removed", chat_id=group, at=at)] if group else []
        return []

    def challenge(self, query: Mapping[str, str], verify_token: str) -> str | None:
        return None  # no subscription handshake on this platform


CODEC = ZaloHooks()
