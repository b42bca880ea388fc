"""The signed-webhook channel (Mocha-like gateways and any bridge), per Standard Webhooks.

Contract (ours, documented in the README): ``POST {base}/v1/messages`` with a JSON event
``{"type": "message.send", "timestamp", "data": {delivery_id, target, text, html, parts, attachments}}``;
``webhook-id`` is the delivery key, identical on every retry, so the gateway de-duplicates. Answers:
2xx sent (202: accepted, not yet posted), 401 auth failed, 403/404/410 target gone, 400/413/422 content
refused, 429 + Retry-After rate-limited, 3xx/5xx/timeouts transient.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime

import aiohttp

from adapters import signing
from adapters.http import Reply, new_session, request, retry_after_seconds
from broadcaster.domain.errors import (
    AuthFailed,
    DeliveryError,
    PermanentError,
    RateLimited,
    TargetGone,
    TransientError,
)
from broadcaster.domain.ports import RenderedMessage, SendResult, Target
from broadcaster.domain.secrets import Secret


def translate(reply: Reply, what: str) -> DeliveryError | None:  # noqa: PLR0911 - one return per answer class
    """The one place where gateway answers become our errors (None: success)."""
    if 200 <= reply.status < 300:
        return None
    body = reply.json()
    code = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", ""))
    reason = f"{what}: HTTP {reply.status}" + (f" {code}" if code else "")
    if reply.status == 429:
        return RateLimited(reason, retry_after_seconds(reply.headers.get("Retry-After")))
    if reply.status == 401:
        return AuthFailed(reason)
    if code == "message_not_found":  # the message is gone, not the group (an edit or delete of it)
        return PermanentError(reason)
    if reply.status in (403, 404, 410):
        return TargetGone(reason)
    if reply.status in (400, 413, 415, 422):
        return PermanentError(reason)
    return TransientError(reason)  # 3xx (redirects are not followed), 5xx, anything unexpected


class WebhookSender:
    platform = "webhook"

    def __init__(
        self,
        base_url: str,
        secret: Secret,
        *,
        session: aiohttp.ClientSession | None = None,
        api_key: Secret | None = None,
    ) -> None:
        signing.secret_key(secret.reveal())  # fail early on a malformed secret
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._api_key = api_key
        self._session = session or new_session()
        self._own_session = session is None

    async def _post(
        self, method: str, path: str, event_id: str, event: dict[str, object], what: str
    ) -> Reply:
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            **signing.headers(self._secret.reveal(), event_id, body),
        }
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        reply = await request(
            self._session, method, f"{self.base_url}{path}", what=what, data=body, headers=headers
        )
        error = translate(reply, what)
        if error is not None:
            raise error
        return reply

    @staticmethod
    def _event(kind: str, data: Mapping[str, object]) -> dict[str, object]:
        return {"type": kind, "timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "data": data}

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        if target.sent:  # one post per delivery, and an earlier attempt made it
            return SendResult(target.sent)
        data: dict[str, object] = {
            "delivery_id": key,
            "target": {"kind": "group", "id": target.external_id},
            "title": message.title,
            "text": "\n\n".join(message.plain_parts),
            "parts": list(message.plain_parts),
            "html": list(message.parts) if message.fmt == "html" else None,
            "link": message.link,
            "attachments": [
                {
                    "type": m.kind,
                    "filename": m.filename,
                    "media_type": m.media_type,
                    "size": len(m.data),
                    "sha256": m.sha256,
                    "url": m.url,
                }
                for m in message.media
            ],
        }
        reply = await self._post(
            "POST", "/v1/messages", key, self._event("message.send", data), "webhook send"
        )
        body = reply.json()
        if not isinstance(body, dict) or not isinstance(body.get("partner_message_id"), str):
            # Accepted, but we cannot tell what was created; the gateway de-duplicates the retry by key.
            raise TransientError(f"webhook send: HTTP {reply.status} without partner_message_id")
        return SendResult((body["partner_message_id"],), accepted_only=reply.status == 202)

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        data = {
            "target": {"kind": "group", "id": target.external_id},
            "partner_message_id": message_id,
            "text": "\n\n".join(message.plain_parts),
        }
        event_id = f"edit-{message_id}-{_digest(data)}"
        await self._post(
            "PATCH", f"/v1/messages/{message_id}", event_id, self._event("message.edit", data), "webhook edit"
        )

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        """Each message in turn; one the bridge no longer has (``message_not_found``) is deleted already."""
        for message_id in message_ids:
            data = {"target": {"kind": "group", "id": target.external_id}, "partner_message_id": message_id}
            try:
                await self._post(
                    "DELETE",
                    f"/v1/messages/{message_id}",
                    f"delete-{message_id}",
                    self._event("message.delete", data),
                    "webhook delete",
                )
            except PermanentError as exc:
                if "message_not_found" not in exc.reason:
                    raise

    async def member_count(self, target: Target) -> int | None:
        data = {"target": {"kind": "group", "id": target.external_id}}
        reply = await self._post(
            "POST",
            "/v1/targets/query",
            f"query-{target.external_id}-{_now()}",
            self._event("target.query", data),
            "webhook member count",
        )
        body = reply.json()
        count = body.get("member_count") if isinstance(body, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()


def _digest(data: object) -> str:
    raw = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:9]).decode()


def _now() -> int:
    return int(datetime.now(UTC).timestamp())
