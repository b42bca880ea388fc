"""Facebook Page posts through a thin aiohttp Graph API client (facebook-sdk is unmaintained since 2018,
synchronous and rejects current Graph versions).

Meta removed group posting in April 2024, so a "group" on Facebook is a Page: feed posts with a link,
photo posts, multi-photo posts (unpublished photos attached to a feed post), edit and delete. Errors
come in ``{"error": {"code", "error_subcode", "message", ...}}``; :func:`translate` is the one place
they become ours, with the wait from ``X-Business-Use-Case-Usage`` when Meta gives one.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from adapters.http import Reply, new_session, request
from broadcaster.domain.errors import (
    AuthFailed,
    DeliveryError,
    PermanentError,
    RateLimited,
    TargetGone,
    TransientError,
)
from broadcaster.domain.ports import Media, RenderedMessage, SendResult, Target
from broadcaster.domain.secrets import Secret

DEFAULT_GRAPH = "https://graph.facebook.com"
DEFAULT_VERSION = "v21.0"
DEFAULT_WAIT = 60.0
PHOTO_MAX = 10 * 1024 * 1024
_RATE = {4, 17, 32, 341, 613, 80001}
_AUTH = {102, 190}
_TRANSIENT = {1, 2}
_OBJECT_MISSING = 33  # subcode of 100: the Page or post no longer exists (or we lost access to it)


def business_wait(headers: dict[str, str] | Any) -> float | None:
    """Seconds until access returns, from ``X-Business-Use-Case-Usage`` (Meta gives minutes)."""
    raw = None
    for key, value in dict(headers).items():
        if key.lower() == "x-business-use-case-usage":
            raw = value
    if not raw:
        return None
    try:
        usage = json.loads(raw)
        minutes = max(
            float(item.get("estimated_time_to_regain_access", 0) or 0)
            for items in usage.values()
            for item in items
        )
    except (ValueError, TypeError, AttributeError):
        return None
    return minutes * 60 if minutes > 0 else None


def _kind(code: object, subcode: object, transient: bool) -> type[DeliveryError]:
    if code in _AUTH:
        return AuthFailed
    if code in _TRANSIENT or transient:
        return TransientError
    if code == 100 and subcode == _OBJECT_MISSING:
        return TargetGone
    return PermanentError  # 3, 10, 100, 200-299 permissions, 368 policy, 506 duplicate, ...


def translate(reply: Reply, what: str) -> DeliveryError | None:
    """The one place Graph answers become our errors (None: success)."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if 200 <= reply.status < 300 and isinstance(body, dict) and error is None:
        return None
    if not isinstance(error, dict):  # a proxy's HTML page, a cut body, a 2xx that is not JSON
        kind = PermanentError if 400 <= reply.status < 500 else TransientError
        return kind(f"{what}: HTTP {reply.status} without a Graph error")
    code, subcode = error.get("code"), error.get("error_subcode")
    reason = f"{what}: Graph error {code}" + (f"/{subcode}" if subcode else "")
    reason += f" {str(error.get('message', ''))[:160]}"
    if code in _RATE:
        return RateLimited(reason, business_wait(reply.headers) or DEFAULT_WAIT)
    return _kind(code, subcode, error.get("is_transient") is True)(reason)


class FacebookSender:
    platform = "facebook"

    def __init__(
        self,
        page_token: Secret,
        *,
        base_url: str = DEFAULT_GRAPH,
        version: str = DEFAULT_VERSION,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._token = page_token
        self.root = f"{base_url.rstrip('/')}/{version}"
        self._session = session or new_session()
        self._own = session is None

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        form: dict[str, str] | aiohttp.FormData | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One Graph call; the Page token goes in the form body for POST, in the query otherwise."""
        data: Any = form
        query = dict(params or {})
        if method == "POST" and not isinstance(form, aiohttp.FormData):
            data = {**(form or {}), "access_token": self._token.reveal()}
        elif method != "POST":
            query["access_token"] = self._token.reveal()
        reply = await request(
            self._session, method, f"{self.root}/{path}", what=what, data=data, params=query
        )
        error = translate(reply, what)
        if error is not None:
            raise error
        body = reply.json()
        assert isinstance(body, dict)  # translate() accepted it
        return body

    def _photo_form(self, media: Media, **fields: str) -> aiohttp.FormData:
        if len(media.data) > PHOTO_MAX:
            raise PermanentError(f"facebook photo: {media.filename} is over the 10 MB limit")
        form = aiohttp.FormData()
        for key, value in {**fields, "access_token": self._token.reveal()}.items():
            form.add_field(key, value)
        form.add_field("source", media.data, filename=media.filename, content_type=media.media_type)
        return form

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        if target.sent:  # one post per delivery, and an earlier attempt made it
            return SendResult(target.sent)
        page = target.external_id
        text = "\n\n".join(message.parts)
        photos = list(message.media)
        if len(photos) == 1:
            body = await self._call(
                "POST",
                f"{page}/photos",
                "facebook photo post",
                form=self._photo_form(photos[0], caption=text),
            )
            post_id = body.get("post_id") or body.get("id")
        else:
            fields: dict[str, str] = {"message": text}
            if message.link and not photos:
                fields["link"] = message.link
            for i, photo in enumerate(photos):
                uploaded = await self._call(
                    "POST",
                    f"{page}/photos",
                    "facebook photo upload",
                    form=self._photo_form(photo, published="false"),
                )
                fields[f"attached_media[{i}]"] = json.dumps({"media_fbid": uploaded.get("id")})
            post_id = (await self._call("POST", f"{page}/feed", "facebook feed post", form=fields)).get("id")
        if not isinstance(post_id, str):
            raise TransientError("facebook post: no post id in the answer")
        return SendResult((post_id,))

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        try:
            await self._call(
                "POST", message_id, "facebook edit", form={"message": "\n\n".join(message.parts)}
            )
        except TargetGone as exc:  # the post is gone (100/33 on its id), not the Page
            raise PermanentError(f"{exc.reason}: the post is no longer there") from None

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        """Each post in turn; one already gone (100/33 on its id) is deleted already."""
        for post_id in message_ids:
            try:
                await self._call("DELETE", post_id, "facebook delete")
            except TargetGone:
                continue

    async def member_count(self, target: Target) -> int | None:
        body = await self._call(
            "GET", target.external_id, "facebook followers", params={"fields": "followers_count"}
        )
        count = body.get("followers_count")
        return count if isinstance(count, int) else None

    async def close(self) -> None:
        if self._own:
            await self._session.close()
