"""Webhook endpoints: ``/hooks/{platform}/{account}``.

Each request is checked (size, account, signature, JSON) and stored before it is answered; what it says
is processed afterwards. Answers: 200 stored (or already stored: a redelivery), 400 malformed, 401 bad
signature, 404 unknown account or platform mismatch, 413 too large, 503 (with Retry-After) when the
database cannot take it, so the platform retries. Nothing else, whatever the input.

The platforms wait seconds at most (Zalo: 2 s), so what a request asks of the database (its account,
the insert) must be done within :data:`DEADLINE`: a database that is down, or stalled (accepting
connections, answering nothing), gets the platform a 503 by then, never a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from broadcaster.domain.errors import HookRejected
from broadcaster.domain.ports import HookCodec
from broadcaster.storage.db import database_name
from broadcaster.web.state import STATE, WebState

log = logging.getLogger(__name__)
T = TypeVar("T")

DEADLINE = 1.5  # seconds the database has to answer a webhook or /healthz (Zalo gives up after 2 s)
RETRY_AFTER = "5"  # seconds, in a 503
WARN_EVERY = 60.0  # seconds between two warnings that requests are answered 503 (not one per request)
_warned = {"at": -WARN_EVERY}


KEY_MAX = 200  # inbound_event.key


def bounded_key(key: str) -> str:
    """The event key as stored: a key longer than the column (a 250-digit Telegram ``update_id``, a
    bridge's long ``webhook-id``) becomes a hash of itself, still unique per event, instead of failing
    the insert of every event written with it."""
    if len(key) <= KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _answer(state: WebState, platform: str, status: int, reason: str) -> web.Response:
    state.count("hook", platform, str(status))
    if status == 200:
        return web.Response(status=200, text="ok")
    headers = {"Retry-After": RETRY_AFTER} if status == 503 else None
    return web.json_response({"error": reason}, status=status, headers=headers)


class TooSlow(TimeoutError):
    """The database did not answer a request within its deadline."""


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``work``'s result if it comes within ``seconds``, else :class:`TooSlow` at once. The answer does not
    wait for a stalled database: ``work`` goes on in the background until the driver gives up (its
    command timeout), so its connection is cleaned up by the code that knows how, not cancelled
    half-way through a statement."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.add_done_callback(_forget)
        raise TooSlow(f"no answer within {max(seconds, 0):.1f} s")
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: not "exception was never retrieved" at exit


def unavailable_answer(state: WebState, exc: Exception, what: str) -> None:
    """Log why requests get a 503: the database unavailable or too slow is one warning a minute (an
    outage is not a traceback per request); anything else is logged in full."""
    unavailable = state.app.unavailable(exc)
    if unavailable is None and not isinstance(exc, TooSlow):
        log.error("%s answered 503", what, exc_info=exc)
        return
    now = time.monotonic()
    if now - _warned["at"] >= WARN_EVERY:
        _warned["at"] = now
        reason = (
            unavailable or f"database {database_name(state.app.settings.database_url)} unavailable: {exc}"
        )
        log.warning("%s answered 503: %s", what, reason)


async def _read(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than ``limit`` (announced or actual)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(request: web.Request) -> web.Response:
    state = request.app[STATE]
    platform = request.match_info["platform"]
    codec = state.codecs.get(platform)
    if codec is None:
        return _answer(state, "unknown", 404, "unknown platform")
    body = await _read(request, state.app.settings.hook_max_bytes)
    if body is None:
        return _answer(state, platform, 413, "body too large")
    try:
        status, reason = await _accept(state, request, codec, body)
    except Exception as exc:  # the database is unavailable: the platform will deliver it again
        unavailable_answer(state, exc, "webhooks")
        status, reason = 503, "temporarily unavailable"
    return _answer(state, platform, status, reason)


async def _accept(state: WebState, request: web.Request, codec: HookCodec, body: bytes) -> tuple[int, str]:
    """Check the request against its account and store it; the database has :data:`DEADLINE` for
    both together (TimeoutError after that)."""
    platform = request.match_info["platform"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    account = await within(DEADLINE, state.hook_account(request.match_info["account"]))
    if account is None or account.platform != platform:
        return 404, "unknown account"
    try:
        key = codec.verify(request.headers, body, account.secret, account.settings, time.time())
        codec.parse(body)  # refuse now what could never be processed (400), store only what can
    except HookRejected as exc:
        return exc.status, str(exc)
    await within(deadline - loop.time(), state.store.store(account.id, platform, bounded_key(key), body))
    state.wake.set()
    state.last_hook = time.monotonic()
    return 200, ""


async def facebook_challenge(request: web.Request) -> web.Response:
    """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` matches."""
    state = request.app[STATE]
    account = await within(DEADLINE, state.hook_account(request.match_info["account"]))
    if account is None or account.platform != "facebook":
        return _answer(state, "facebook", 404, "unknown account")
    value = state.codecs["facebook"].challenge(dict(request.query), account.verify_token)
    if value is None:
        return _answer(state, "facebook", 403, "verify token does not match")
    state.count("hook", "facebook", "challenge")
    return web.Response(text=value, content_type="text/plain")


@web.middleware
async def never_500(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Whatever a request holds, it gets a 4xx or a 503, never a 500 (and the failure is logged)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except HookRejected as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except Exception as exc:
        unavailable_answer(request.app[STATE], exc, f"{request.method} {request.path}")
        return web.json_response(
            {"error": "temporarily unavailable"}, status=503, headers={"Retry-After": RETRY_AFTER}
        )
