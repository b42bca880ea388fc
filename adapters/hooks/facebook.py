"""Meta (Facebook Page) webhooks, field ``feed``.

``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``: Meta signs the bytes it sends
(non-ASCII escaped as ``\\uXXXX``), so the raw request body is what is checked, never a re-encoding.
Meta has no event id and batches up to 1000 changes per request; the body's hash is the key. Used:
comments on our Page posts (replies) and reactions to them; the Page's own posts are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from adapters.hooks.common import epoch, header, ident, json_object, obj, text
from broadcaster.domain.errors import BadPayload, BadSignature
from broadcaster.domain.ports import Signal

HEADER = "x-hub-signature-256"


def challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The subscription handshake: the ``hub.challenge`` to echo, or None (answer 403)."""
    if (
        verify_token
        and query.get("hub.mode") == "subscribe"
        and hmac.compare_digest(query.get("hub.verify_token", "").encode(), verify_token.encode())
    ):
        value = query.get("hub.challenge", "")
        return value if value.isascii() and 0 < len(value) <= 128 else None
    return None


class FacebookHooks:
    platform = "facebook"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, settings: Mapping[str, Any], now: float
    ) -> str:
        received = header(headers, HEADER)
        if not secret or not received.startswith("sha256="):
            raise BadSignature("missing X-Hub-Signature-256")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(received.removeprefix("sha256=").lower().encode(), expected.encode()):
            raise BadSignature("X-Hub-Signature-256 does not match the body")
        return "sha256:" + hashlib.sha256(body).hexdigest()[:48]

    def parse(self, body: bytes) -> list[Signal]:
        note = json_object(body)
        entries = note.get("entry")
        if note.get("object") != "page" or not isinstance(entries, list):
            raise BadPayload("a Page notification without entries")
        signals: list[Signal] = []
        for entry in entries:
            page = ident(obj(entry).get("id"))
            changes = obj(entry).get("changes")
            if page is None or not isinstance(changes, list):
                continue
            for raw in changes:
                change = obj(raw)
                if change.get("field") == "feed":
                    signal = _feed(page, obj(change.get("value")))
                    if signal is not None:
                        signals.append(signal)
        return signals

    def challenge(self, query: Mapping[str, str], verify_token: str) -> str | None:
        return challenge(query, verify_token)


def _feed(page: str, value: dict[str, Any]) -> Signal | None:
    person = ident(obj(value.get("from")).get("id"))
    if person == page:
        return None  # the Page's own posts and comments
    post, item, verb = ident(value.get("post_id")), value.get("item"), value.get("verb")
    at = epoch(value.get("created_time"))
    if post is None:
        return None
    if item == "comment" and verb == "add":
        return Signal(
            "reply",
            chat_id=page,
            message_id=post,
            user_id=person,
            text=text(value.get("message")) or "",
            external_id=ident(value.get("comment_id")),
            at=at,
        )
    if item == "reaction" and "comment_id" not in value and verb in {"add", "remove", "edit", "edited"}:
        count = {"add": 1, "remove": -1}.get(str(verb), 0)
        reaction = text(value.get("reaction_type"), 64)
        return Signal(
            "reaction", chat_id=page, message_id=post, user_id=person, value=reaction, count=count, at=at
        )
    return None


CODEC = FacebookHooks()
