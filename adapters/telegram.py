"""Telegram through python-telegram-bot's ``Bot``, with an aiohttp request layer.

PTB's default httpx pool degrades under concurrency on this class of machine (~400 requests/s against
~4,500/s for aiohttp), so :class:`AiohttpRequest` replaces it. A broadcast's text messages (sendMessage)
go straight on that session, and only a refusal goes back through PTB (:class:`_Answered`). Errors are
translated in one place, :func:`translate`, from PTB's exception classes (PTB has already read the HTTP
status and ``parameters``): flood control, migration, kicked/blocked, bad token, bad requests, timeouts.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import aiohttp
from telegram import Bot, InputMediaDocument, InputMediaPhoto, Message
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import BaseRequest, RequestData
from yarl import URL

from broadcaster.domain.errors import (
    AuthFailed,
    DeliveryError,
    NotSupported,
    PermanentError,
    RateLimited,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.ports import Media, RenderedMessage, SendResult, Target, WebhookInfo
from broadcaster.domain.secrets import Secret, redact_text

DEFAULT_BASE_URL = "https://api.telegram.org"
_JSON = {"Content-Type": "application/json"}
PHOTO_MAX = 10 * 1024 * 1024  # Bot API upload limits (a local Bot API server allows more)
FILE_MAX = 50 * 1024 * 1024
ALBUM_MAX = 10
# "Bad Request: chat not found" means the id is wrong or the bot never saw the chat: nothing to retry,
# and the group should be looked at, as for a kicked bot.
_GONE_REQUESTS = (
    "chat not found",
    "chat_write_forbidden",
    "have no rights to send",
    "group chat was deleted",
)


# PTB class -> ours, first match wins. TimedOut and BadRequest are NetworkErrors in PTB's tree, so they
# come before NetworkError.
_TABLE: tuple[tuple[type[TelegramError], type[DeliveryError]], ...] = (
    (Forbidden, TargetGone),
    (InvalidToken, AuthFailed),
    (TimedOut, TransientError),
    (BadRequest, PermanentError),
    (Conflict, PermanentError),
    (NetworkError, TransientError),
)


def translate(exc: TelegramError, what: str) -> DeliveryError:
    """The one place where PTB errors become ours."""
    reason = f"{what}: {redact_text(str(exc))}"
    if isinstance(exc, RetryAfter):
        wait = exc._retry_after  # a timedelta whatever PTB_TIMEDELTA says; reading it never warns
        return RateLimited(reason, wait.total_seconds() if isinstance(wait, timedelta) else float(wait))
    if isinstance(exc, ChatMigrated):
        return TargetMigrated(reason, str(exc.new_chat_id))
    if isinstance(exc, BadRequest) and any(s in str(exc).lower() for s in _GONE_REQUESTS):
        return TargetGone(reason)
    for kind, ours in _TABLE:
        if isinstance(exc, kind):
            error = ours(reason)
            # A timeout or a network failure: the request may have been read (a message shown twice).
            error.maybe_sent = isinstance(exc, TimedOut | NetworkError) and not isinstance(exc, BadRequest)
            return error
    return TransientError(reason)  # "Invalid server response" and anything PTB adds later


class AiohttpRequest(BaseRequest):
    """PTB's request interface on an aiohttp session (form-encoded, multipart for uploads)."""

    def __init__(
        self,
        *,
        connections: int = 256,
        read_timeout: float = 20.0,
        connect_timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._connections = connections
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._session = session
        self._own = session is None
        # One timeout object for every request with the defaults, not one built per request.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections)
            # The Bot API sets no cookies: a dummy jar skips filtering and storing them per request.
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
            self._own = True

    async def shutdown(self) -> None:
        if self._own and self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        timeout = self._timeout
        if read_timeout is not BaseRequest.DEFAULT_NONE or connect_timeout is not BaseRequest.DEFAULT_NONE:
            read = self._read_timeout if read_timeout is BaseRequest.DEFAULT_NONE else read_timeout
            connect = (
                self._connect_timeout if connect_timeout is BaseRequest.DEFAULT_NONE else connect_timeout
            )
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        data: Any = None
        headers: dict[str, str] | None = None
        if request_data is not None:
            files = request_data.multipart_data
            if files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mime) in files.items():
                    payload = content if isinstance(content, bytes) else content.read()
                    form.add_field(name, payload, filename=filename, content_type=mime)
                data = form
            elif parameters := request_data.parameters:
                # A JSON body (the Bot API takes one for every method without files), encoded here:
                # handing aiohttp a dict builds a FormData and a multipart writer per request (a third
                # of the client's CPU), and url-encoding Vietnamese text byte by byte cost more than
                # the JSON encoder.
                data = json.dumps(parameters, ensure_ascii=False).encode()
                headers = _JSON
        return await self._exchange(method, url, data, headers, timeout)

    async def post_json(self, url: URL, body: bytes) -> tuple[int, bytes]:
        """A POST of an encoded JSON body straight on the session: the broadcast's hot path
        (sendMessage), without building PTB's ``RequestData`` for three parameters."""
        return await self._exchange("POST", url, body, _JSON, self._timeout)

    async def _exchange(
        self,
        method: str,
        url: str | URL,
        data: Any,
        headers: dict[str, str] | None,
        limits: aiohttp.ClientTimeout,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=limits
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}") from exc


class _Answered(BaseRequest):
    """An answer already received, handed to PTB's own reading of it: ``post`` raises the exception
    PTB raises for that status and body (flood control, migration, kicked, bad token...), so a
    request sent outside PTB is still judged by PTB's rules, never by a second copy of them."""

    def __init__(self, status: int, payload: bytes) -> None:
        self._answer = (status, payload)

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        return self._answer


@dataclass(frozen=True, slots=True)
class _Sent:
    message_id: int


class TelegramSender:
    """One bot. ``base_url`` is the API root (``https://api.telegram.org``, a local Bot API server or
    the sandbox); the token is appended by PTB and never appears in our errors."""

    platform = "telegram"

    def __init__(
        self,
        token: Secret,
        *,
        base_url: str = DEFAULT_BASE_URL,
        connections: int = 256,
        read_timeout: float = 20.0,
    ) -> None:
        # PTB warns about its int retry_after unless this is set, which our tests turn into errors.
        os.environ.setdefault("PTB_TIMEDELTA", "1")
        root = base_url.rstrip("/")
        self._request = AiohttpRequest(connections=connections, read_timeout=read_timeout)
        self._updates_request = AiohttpRequest(connections=1)
        self.bot = Bot(
            token.reveal(),
            base_url=f"{root}/bot",
            base_file_url=f"{root}/file/bot",
            request=self._request,
            get_updates_request=self._updates_request,
        )
        self._ready = False
        self._lock = asyncio.Lock()
        self._send_message = URL(f"{self.bot.base_url}/sendMessage")  # parsed once, not per request

    async def _bot(self) -> Bot:
        if not self._ready:
            async with self._lock:
                if not self._ready:
                    try:
                        await self.bot.initialize()  # getMe: a wrong token shows here
                    except TelegramError as exc:
                        raise translate(exc, "telegram getMe") from None
                    self._ready = True
        return self.bot

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        for item in message.media:
            limit = PHOTO_MAX if item.kind == "photo" else FILE_MAX
            if len(item.data) > limit:
                raise PermanentError(
                    f"telegram: {item.filename} is over the {limit // 2**20} MB upload limit"
                )
        bot = await self._bot()
        chat = target.external_id
        # The messages of the post in order, each step with how many message ids it makes (an album:
        # one per item); steps whose ids an earlier attempt already has are not sent again.
        steps: list[tuple[int, Callable[[], Awaitable[Sequence[Message | _Sent]]]]]
        media = list(message.media)
        if len(media) == 1 and message.caption is not None:
            steps = [(1, partial(self._single_step, bot, chat, media[0], message.caption))]
        else:
            steps = [(1, partial(self._text_step, chat, part)) for part in message.parts]
            steps += self._media_steps(bot, chat, media)
        done, skip = list(target.sent), len(target.sent)
        accepted_only = False
        try:
            for count, step in steps:
                if skip >= count:
                    skip -= count
                    continue
                if skip:  # ids that do not fit this post's layout (it changed): that step goes again
                    del done[len(done) - skip :]
                    skip = 0
                for m in await step():
                    done.append(str(m.message_id))
                    accepted_only |= m.message_id == 0
        except TelegramError as exc:
            raise translate(exc, f"telegram send part {len(done) + 1}").after(tuple(done)) from None
        return SendResult(tuple(done), accepted_only=accepted_only)

    async def _text_step(self, chat: str, text: str) -> Sequence[Message | _Sent]:
        return (await self._text(chat, text),)

    async def _single_step(
        self, bot: Bot, chat: str, media: Media, caption: str | None
    ) -> Sequence[Message | _Sent]:
        return (await self._single(bot, chat, media, caption),)

    async def _text(self, chat: str, text: str) -> _Sent:
        """sendMessage, the one request a broadcast makes thousands of times, keeping only the message
        id (a full ``Message`` object cost more than the HTTP exchange). The request goes straight to
        the session (PTB's generic path, parameter objects and request data, cost a quarter of the
        adapter's CPU); any answer but a success is read by PTB (:class:`_Answered`)."""
        body = json.dumps(
            {"chat_id": chat, "text": text, "parse_mode": ParseMode.HTML.value}, ensure_ascii=False
        ).encode()
        status, payload = await self._request.post_json(self._send_message, body)
        if not 200 <= status <= 299:
            await _Answered(status, payload).post(str(self._send_message))
        try:
            result = json.loads(payload)["result"]
        except (ValueError, KeyError, TypeError):
            result = None
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            raise TelegramError("Invalid server response")
        return _Sent(result["message_id"])

    @staticmethod
    async def _single(bot: Bot, chat: str, media: Media, caption: str | None) -> Message:
        if media.kind == "photo":
            return await bot.send_photo(
                chat, media.data, caption=caption, parse_mode=ParseMode.HTML, filename=media.filename
            )
        return await bot.send_document(
            chat, media.data, caption=caption, parse_mode=ParseMode.HTML, filename=media.filename
        )

    def _media_steps(
        self, bot: Bot, chat: str, media: Sequence[Media]
    ) -> list[tuple[int, Callable[[], Awaitable[Sequence[Message | _Sent]]]]]:
        """Photos as an album (2-10 per album), documents as their own album; singles alone."""
        steps: list[tuple[int, Callable[[], Awaitable[Sequence[Message | _Sent]]]]] = []
        photos = [m for m in media if m.kind == "photo"]
        documents = [m for m in media if m.kind != "photo"]
        for group, kind in ((photos, "photo"), (documents, "document")):
            for start in range(0, len(group), ALBUM_MAX):
                chunk = group[start : start + ALBUM_MAX]
                if len(chunk) == 1:
                    steps.append((1, partial(self._single_step, bot, chat, chunk[0], None)))
                    continue
                items: list[InputMediaPhoto | InputMediaDocument] = [
                    InputMediaPhoto(m.data, filename=m.filename)
                    if kind == "photo"
                    else InputMediaDocument(m.data, filename=m.filename)
                    for m in chunk
                ]
                steps.append((len(items), partial(bot.send_media_group, chat, items)))
        return steps

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        """A text message gets its text replaced (editMessageText); a photo or document sent with the
        post as its caption gets the caption (editMessageCaption) or, when the attachment changed, the
        file and caption together (editMessageMedia). Telegram refuses editMessageText on a captioned
        message: that is ``NotSupported`` (a correction is posted instead)."""
        bot = await self._bot()
        chat, ident = target.external_id, int(message_id)
        try:
            if len(message.media) == 1 and message.caption is not None:
                if message.keep_media:
                    await bot.edit_message_caption(
                        chat_id=chat, message_id=ident, caption=message.caption, parse_mode=ParseMode.HTML
                    )
                else:
                    item = message.media[0]
                    kind = InputMediaPhoto if item.kind == "photo" else InputMediaDocument
                    media = kind(
                        item.data, caption=message.caption, parse_mode=ParseMode.HTML, filename=item.filename
                    )
                    await bot.edit_message_media(media, chat_id=chat, message_id=ident)
            else:
                await bot.edit_message_text(
                    message.parts[0], chat_id=chat, message_id=ident, parse_mode=ParseMode.HTML
                )
        except BadRequest as exc:
            if "there is no text in the message to edit" in exc.message.lower():
                raise NotSupported(
                    "telegram: the post went out as a photo or document with a caption and the new "
                    "revision has no attachment: a correction is posted instead"
                ) from None
            raise translate(exc, "telegram edit") from None
        except TelegramError as exc:
            raise translate(exc, "telegram edit") from None

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        """Each message in turn; one already gone ("message to delete not found") is deleted already."""
        bot = await self._bot()
        for message_id in message_ids:
            try:
                await bot.delete_message(target.external_id, int(message_id))
            except BadRequest as exc:
                if "message to delete not found" not in exc.message.lower():
                    raise translate(exc, "telegram delete") from None
            except TelegramError as exc:
                raise translate(exc, "telegram delete") from None

    async def member_count(self, target: Target) -> int | None:
        bot = await self._bot()
        try:
            return await bot.get_chat_member_count(target.external_id)
        except TelegramError as exc:
            raise translate(exc, "telegram member count") from None

    async def set_webhook(self, url: str, secret_token: str, allowed_updates: Sequence[str]) -> None:
        """Point the bot's updates at ``url``; Telegram sends ``secret_token`` in every request's
        ``X-Telegram-Bot-Api-Secret-Token``. Reactions come only when listed in ``allowed_updates``."""
        bot = await self._bot()
        try:
            await bot.set_webhook(url=url, secret_token=secret_token, allowed_updates=list(allowed_updates))
        except TelegramError as exc:
            raise translate(exc, "telegram setWebhook") from None

    async def delete_webhook(self) -> None:
        bot = await self._bot()
        try:
            await bot.delete_webhook()
        except TelegramError as exc:
            raise translate(exc, "telegram deleteWebhook") from None

    async def webhook_info(self) -> WebhookInfo:
        """What Telegram reports: the URL, updates waiting, and the last delivery error it saw."""
        bot = await self._bot()
        try:
            info = await bot.get_webhook_info()
        except TelegramError as exc:
            raise translate(exc, "telegram getWebhookInfo") from None
        return WebhookInfo(
            info.url,
            info.pending_update_count,
            tuple(info.allowed_updates or ()),
            info.last_error_date,
            info.last_error_message,
        )

    async def close(self) -> None:
        if self._ready:
            await self.bot.shutdown()
        # A failed initialize (a refused token) leaves PTB thinking nothing is open; close both anyway.
        await self._request.shutdown()
        await self._updates_request.shutdown()
