"""Zalo Official Account: GMF group messages, one-to-one messages to followers (relay), token refresh.

A thin aiohttp client of our own (no maintained SDK exists). Zalo answers logical errors with HTTP 200
and a negative ``error``: :func:`translate` is the one place they become our errors. An expired or
invalid access token (-216/-220) triggers one refresh through the :class:`TokenStore` (single-use
refresh token, rotated under an exclusive lock and persisted before use), then the call is repeated once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from adapters.http import Reply, new_session, request
from broadcaster.domain.errors import (
    AuthFailed,
    DeliveryError,
    NotSupported,
    PermanentError,
    RateLimited,
    TargetGone,
    TransientError,
)
from broadcaster.domain.ports import Media, OAuthTokens, RenderedMessage, SendResult, Target, TokenStore
from broadcaster.domain.secrets import Secret

DEFAULT_API = "https://openapi.zalo.me"
DEFAULT_OAUTH = "https://oauth.zaloapp.com"
RATE_LIMIT_WAIT = 60.0  # -32 carries no wait; the documented window is a minute
QUOTA_WAIT = 3600.0
IMAGE_MAX = 1024 * 1024
TOKEN_ERRORS = {-216, -220}
# A refresh the OAuth server could not answer is tried three times, 0.5 s and 1 s apart.
REFRESH_ATTEMPTS = 3
REFRESH_BACKOFF = 0.5
_RATE = {-32: RATE_LIMIT_WAIT, -211: QUOTA_WAIT, -214: RATE_LIMIT_WAIT}
_GONE = {
    -237,
    -403,
    -213,
    -217,
    -227,
    -230,
    -232,
    -244,
}  # group disabled / OA not in group / user unreachable
_ACCOUNT = {-204, -205, -209, -212, -219, -221, -223, -224, -235, -242, *TOKEN_ERRORS}
_TRANSIENT = {-200}
_TABLE: tuple[tuple[set[int], type[DeliveryError]], ...] = (
    (_GONE, TargetGone),
    (_ACCOUNT, AuthFailed),
    (_TRANSIENT, TransientError),
)


def translate(reply: Reply, what: str) -> DeliveryError | None:
    """HTTP status and the ``error`` envelope -> our errors (None: success)."""
    body = reply.json()
    if reply.status != 200 or not isinstance(body, dict) or not isinstance(body.get("error"), int):
        detail = f"HTTP {reply.status}" if reply.status != 200 else "malformed response"
        return TransientError(f"{what}: {detail}")  # a proxy's HTML page, a cut connection
    code = body["error"]
    if code == 0:
        return None
    reason = f"{what}: Zalo error {code} {str(body.get('message', ''))[:120]}".rstrip()
    if code in _RATE:
        return RateLimited(reason, _RATE[code])
    kind = next((ours for codes, ours in _TABLE if code in codes), PermanentError)
    return kind(reason)  # unknown codes: -100 expired attachment, -201 invalid field, -210 too long, -248...


class ZaloSender:
    platform = "zalo"

    def __init__(
        self,
        tokens: TokenStore,
        *,
        app_id: str,
        app_secret: Secret,
        base_url: str = DEFAULT_API,
        oauth_url: str = DEFAULT_OAUTH,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._tokens = tokens
        self._app_id = app_id
        self._app_secret = app_secret
        self.base_url = base_url.rstrip("/")
        self.oauth_url = oauth_url.rstrip("/")
        self._session = session or new_session()
        self._own = session is None

    async def _access_token(self) -> str:
        tokens = await self._tokens.load()
        if tokens is None:
            raise AuthFailed("zalo: no tokens stored for this account; authorise the OA first")
        if tokens.expires_at - time.time() < 60:
            tokens = await self._tokens.rotate(tokens.access_token, self._refresh)
        return tokens.access_token

    async def _refresh(self, current: OAuthTokens) -> OAuthTokens:
        """Exchange the refresh token (under the token store's lock). Only an answer of the OAuth server
        that says no (a JSON ``error``, a 4xx) is a refusal that pauses the account; a network failure,
        a 5xx or 429 or a proxy's page did not spend the token: tried again with backoff, then a
        ``TransientError`` (the delivery is retried later, the account stays active)."""
        form = {"refresh_token": current.refresh_token, "app_id": self._app_id, "grant_type": "refresh_token"}
        for attempt in range(1, REFRESH_ATTEMPTS + 1):
            try:
                reply = await request(
                    self._session,
                    "POST",
                    f"{self.oauth_url}/v4/oa/access_token",
                    what="zalo token refresh",
                    data=form,
                    headers={"secret_key": self._app_secret.reveal()},
                )
            except TransientError:
                if attempt == REFRESH_ATTEMPTS:
                    raise
                await asyncio.sleep(REFRESH_BACKOFF * 2 ** (attempt - 1))
                continue
            body = reply.json()
            if reply.status >= 500 or reply.status == 429 or not isinstance(body, dict):
                if attempt == REFRESH_ATTEMPTS:
                    raise TransientError(
                        f"zalo token refresh: HTTP {reply.status}, the OAuth server is unavailable"
                    )
                await asyncio.sleep(REFRESH_BACKOFF * 2 ** (attempt - 1))
                continue
            break
        if reply.status != 200 or not body.get("access_token"):
            raise AuthFailed(f"zalo token refresh refused (error {body.get('error')}); re-authorise the OA")
        try:
            expires_in = float(body.get("expires_in", 90000))
        except (TypeError, ValueError):
            expires_in = 90000.0
        return OAuthTokens(str(body["access_token"]), str(body["refresh_token"]), time.time() + expires_in)

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        """One API call with the stored token; on -216/-220 refresh once and repeat."""
        token = await self._access_token()
        for attempt in (1, 2):
            headers = {"access_token": token, **kwargs.pop("headers", {})}
            reply = await request(
                self._session, method, f"{self.base_url}{path}", what=what, headers=headers, **kwargs
            )
            body = reply.json()
            if attempt == 1 and isinstance(body, dict) and body.get("error") in TOKEN_ERRORS:
                token = (await self._tokens.rotate(token, self._refresh)).access_token
                continue
            error = translate(reply, what)
            if error is not None:
                raise error
            data = body.get("data") if isinstance(body, dict) else None
            return data if isinstance(data, dict) else {}
        raise AssertionError("unreachable")

    async def _upload_image(self, media: Media) -> str:
        if len(media.data) > IMAGE_MAX:
            raise PermanentError(f"zalo upload: {media.filename} is over Zalo's 1 MB image limit")
        form = aiohttp.FormData()
        form.add_field("file", media.data, filename=media.filename, content_type=media.media_type)
        data = await self._call("POST", "/v2.0/oa/upload/image", "zalo upload image", data=form)
        attachment = data.get("attachment_id")
        if not isinstance(attachment, str):
            raise TransientError("zalo upload image: no attachment_id in the answer")
        return attachment

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        if target.kind == "user":
            path, recipient = "/v3.0/oa/message/cs", {"user_id": target.external_id}
        else:
            path, recipient = "/v3.0/oa/group/message", {"group_id": target.external_id}
        # Each text part, then each image, is one message; those an earlier attempt sent (target.sent)
        # are not sent again, and an error after some went out carries their ids.
        ids = list(target.sent)
        try:
            await self._send_parts(path, recipient, message, ids, len(ids))
        except DeliveryError as exc:
            raise exc.after(tuple(ids)) from None
        return SendResult(tuple(ids))

    async def _send_parts(
        self, path: str, recipient: dict[str, str], message: RenderedMessage, ids: list[str], skip: int
    ) -> None:
        for n, part in enumerate(message.parts, start=1):
            if n <= skip:
                continue
            data = await self._call(
                "POST", path, f"zalo send part {n}", json={"recipient": recipient, "message": {"text": part}}
            )
            ids.append(str(data.get("message_id", "")))
        for n, media in enumerate(message.media, start=len(message.parts) + 1):
            if n <= skip:
                continue
            attachment = await self._upload_image(media)
            payload = {
                "template_type": "media",
                "elements": [{"media_type": "image", "attachment_id": attachment}],
            }
            data = await self._call(
                "POST",
                path,
                "zalo send image",
                json={
                    "recipient": recipient,
                    "message": {"attachment": {"type": "template", "payload": payload}},
                },
            )
            ids.append(str(data.get("message_id", "")))

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        raise NotSupported("zalo: messages cannot be edited; send a correction instead")

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        raise NotSupported("zalo: the OA API cannot delete group messages; ask the group admins to remove it")

    async def member_count(self, target: Target) -> int | None:
        if target.kind == "user":
            return None
        data = await self._call(
            "GET", "/v3.0/oa/group/getgroup", "zalo group info", params={"group_id": target.external_id}
        )
        info = data.get("group_info")
        count = info.get("total_member") if isinstance(info, dict) else None
        return count if isinstance(count, int) else None

    async def close(self) -> None:
        if self._own:
            await self._session.close()
