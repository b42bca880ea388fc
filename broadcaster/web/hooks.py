"""Webhook endpoints: ``/hooks/{platform}/{account}``.

Each request is checked (size, account, signature, JSON) and stored before it is answered; what it says
is processed afterwards. Answers: 200 stored (or already stored: a redelivery), 400 malformed, 401 bad
signature, 404 unknown account or platform mismatch, 413 too large, 503 (with Retry-After) when the
database cannot take it, so the platform retries. Nothing else, whatever the input.
"""

from __future__ import annotations

import hashlib
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from broadcaster.domain.errors import HookRejected
from broadcaster.web.state import STATE, WebState

log = logging.getLogger(__name__)


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
    headers = {"Retry-After": "5"} if status == 503 else None
    return web.json_response({"error": reason}, status=status, headers=headers)


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
    account = await state.hook_account(request.match_info["account"])
    if account is None or account.platform != platform:
        return _answer(state, platform, 404, "unknown account")
    try:
        key = codec.verify(request.headers, body, account.secret, account.settings, time.time())
        codec.parse(body)  # refuse now what could never be processed (400), store only what can
    except HookRejected as exc:
        return _answer(state, platform, exc.status, str(exc))
    try:
        await state.store.store(account.id, platform, bounded_key(key), body)
    except Exception:  # the database is unavailable: the platform will deliver it again
        log.exception("could not store a %s event", platform)
        return _answer(state, platform, 503, "temporarily unavailable")
    state.wake.set()
    state.last_hook = time.monotonic()
    return _answer(state, platform, 200, "")


async def facebook_challenge(request: web.Request) -> web.Response:
    """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` matches."""
    state = request.app[STATE]
    account = await state.hook_account(request.match_info["account"])
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
    except Exception:
        log.exception("%s %s", request.method, request.path)
        return web.json_response(
            {"error": "temporarily unavailable"}, status=503, headers={"Retry-After": "5"}
        )
