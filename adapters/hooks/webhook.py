"""Our signed-webhook contract, inbound side (a Mocha-like bridge posting back; Standard Webhooks).

Signed with the bridge's own ``whsec_`` secret over ``"{webhook-id}.{webhook-timestamp}.{raw body}"``;
timestamps outside +-5 minutes are refused (replays); ``webhook-id`` is the de-duplication key. Events
name our delivery key (``data.delivery_id``), so they link to the delivery directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters import signing
from adapters.hooks.common import epoch, ident, json_object, obj, text
from broadcaster.domain.errors import BadPayload, BadSignature, ConfigError
from broadcaster.domain.ports import Signal


def _at(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else None
    return epoch(value)


class WebhookHooks:
    platform = "webhook"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, settings: Mapping[str, Any], now: float
    ) -> str:
        if not secret:
            raise BadSignature("no inbound secret configured for this account")
        try:
            key = signing.verify(secret, dict(headers), body, now)
        except (signing.SignatureError, ConfigError) as exc:  # a secret we cannot use refuses every request
            raise BadSignature(str(exc)) from None
        if len(key) > 180:
            raise BadPayload("webhook-id is too long")
        return key

    def parse(self, body: bytes) -> list[Signal]:  # noqa: PLR0911 - one return per event type
        event = json_object(body)
        kind, data = event.get("type"), obj(event.get("data"))
        if not isinstance(kind, str):
            raise BadPayload("an event without a type")
        key = ident(data.get("delivery_id"))
        target = ident(obj(data.get("target")).get("id"))
        message = ident(data.get("partner_message_id"))
        if kind == "message.reply":
            reply = obj(data.get("reply"))
            return [
                Signal(
                    "reply",
                    chat_id=target,
                    message_id=message,
                    delivery_key=key,
                    user_id=ident(obj(reply.get("user")).get("id")),
                    text=text(reply.get("text")) or "",
                    external_id=ident(reply.get("id")),
                    at=_at(reply.get("created_at")),
                )
            ]
        if kind == "message.reaction":
            count = -1 if data.get("action") == "remove" else 1
            return [
                Signal(
                    "reaction",
                    chat_id=target,
                    message_id=message,
                    delivery_key=key,
                    user_id=ident(obj(data.get("user")).get("id")),
                    value=text(data.get("reaction"), 64),
                    count=count,
                    at=_at(data.get("at")),
                )
            ]
        if kind == "message.read":
            read = data.get("read_count")
            if isinstance(read, int) and not isinstance(read, bool) and read >= 0:
                return [Signal("read", delivery_key=key, count=read, at=_at(data.get("as_of")))]
            return []
        if kind == "target.membership":
            members = data.get("member_count")
            if target and isinstance(members, int) and not isinstance(members, bool) and members >= 0:
                return [Signal("members", chat_id=target, count=members, at=_at(data.get("as_of")))]
            return []
        if kind == "target.removed":
            return (
                [Signal("bot_removed", chat_id=target, text=text(data.get("reason"), 200))] if target else []
            )
        return []

    def challenge(self, query: Mapping[str, str], verify_token: str) -> str | None:
        return None  # no subscription handshake on this platform


CODEC = WebhookHooks()
