"""A sandbox partner gateway for the signed-webhook channel (what a Mocha-like bridge would run).

It verifies Standard Webhooks signatures over the raw bytes, rejects stale timestamps, answers a
repeated ``webhook-id`` with the first answer (idempotency), rate-limits with 429 + Retry-After, and
keeps every accepted message for inspection. Control API under ``/__sim``.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.sandbox import signer
from adapters.sandbox.common import Emitter, FaultConfig, Faults, SlidingWindow, fault_middleware

MAX_BODY = 64 * 1024


@dataclass(slots=True)
class GatewayTarget:
    members: int
    status: str = "ok"  # ok | not_member | gone


@dataclass(slots=True)
class GatewayState:
    secret: str
    auto_targets: bool = True
    per_second: int | None = None
    targets: dict[str, GatewayTarget] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    window: SlidingWindow | None = None
    inbound_url: str = ""  # where the gateway posts replies and reactions (the broadcaster's hook)
    inbound_secret: str = ""
    reply_rate: float = 0.0
    emitter: Emitter = field(default_factory=Emitter)

    def __post_init__(self) -> None:
        if self.per_second:
            self.window = SlidingWindow(self.per_second, 1.0)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


STATE = web.AppKey("state", GatewayState)


def _target(state: GatewayState, data: dict[str, Any]) -> GatewayTarget | web.Response:
    target_id = str((data.get("target") or {}).get("id", ""))
    target = state.targets.get(target_id)
    if target is None and state.auto_targets and target_id:
        target = state.targets[target_id] = GatewayTarget(members=state.rng.randint(15, 400))
    if target is None:
        return _error(404, "target_not_found", f"unknown target {target_id!r}")
    if target.status == "gone":
        return _error(410, "target_deleted", "the group was deleted")
    if target.status == "not_member":
        return _error(403, "not_member", "the bridge is not a member of the group")
    return target


async def _verified(request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
    state = request.app[STATE]
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, "payload_too_large", f"body over {MAX_BODY} bytes")
    raw = await request.read()
    if len(raw) > MAX_BODY:
        return _error(413, "payload_too_large", f"body over {MAX_BODY} bytes")
    try:
        event_id = signer.check(state.secret, request.headers, raw)
    except signer.BadSignature as exc:
        return _error(401, "bad_signature", str(exc))
    try:
        event = json.loads(raw)
    except ValueError:
        return _error(400, "invalid_request", "body is not JSON")
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        return _error(400, "invalid_request", "expected {type, timestamp, data}")
    return event_id, event


async def send_message(request: web.Request) -> web.Response:
    state = request.app[STATE]
    checked = await _verified(request)
    if isinstance(checked, web.Response):
        return checked
    event_id, event = checked
    if event_id in state.answers:
        status, body = state.answers[event_id]
        return web.json_response(body, status=status)
    if state.window is not None and (wait := state.window.hit()) > 0:
        return _error(429, "rate_limited", "slow down", {"Retry-After": str(max(1, round(wait)))})
    data = event["data"]
    target = _target(state, data)
    if isinstance(target, web.Response):
        return target
    if not str(data.get("text", "")).strip() and not data.get("attachments"):
        return _error(422, "content_rejected", "empty message")
    message_id = f"m_{next(state.ids)}"
    state.messages[message_id] = {
        "event_id": event_id,
        "target": data["target"]["id"],
        "data": data,
        "deleted": False,
        "edits": [],
    }
    body = {
        "delivery_id": data.get("delivery_id"),
        "partner_message_id": message_id,
        "member_count": target.members,
    }
    state.answers[event_id] = (202, body)
    _maybe_reply(state, message_id, data)
    return web.json_response(body, status=202)


def _maybe_reply(state: GatewayState, message_id: str, data: dict[str, Any]) -> None:
    if not state.inbound_url or not state.inbound_secret or state.rng.random() >= state.reply_rate:
        return
    now = datetime.now(UTC).isoformat(timespec="seconds")
    reply = {
        "id": f"r_{next(state.ids)}",
        "text": "Cảm ơn, đã nhận được",
        "created_at": now,
        "user": {"id": f"u{state.rng.randint(1, 999)}", "display_name": "Mùa A Sơn"},
    }
    event = {
        "type": "message.reply",
        "timestamp": now,
        "data": {
            "delivery_id": data.get("delivery_id"),
            "partner_message_id": message_id,
            "target": data.get("target"),
            "reply": reply,
        },
    }
    state.emitter.spawn(_emit(state, event))


async def _emit(state: GatewayState, event: dict[str, Any]) -> None:
    """Deliver an inbound event signed with the gateway's own secret, retrying (time-compressed)."""
    body = json.dumps(event, ensure_ascii=False).encode()
    msg_id = f"evt_{next(state.ids)}"  # the same id on every retry
    headers = {"Content-Type": "application/json", **signer.sign_headers(state.inbound_secret, msg_id, body)}
    await state.emitter.post(
        state.inbound_url,
        body,
        headers,
        (0.0, 0.5, 2.0, 5.0),
        done=lambda status: 200 <= status < 300 or status == 410,
    )


async def _close(app: web.Application) -> None:
    await app[STATE].emitter.close()


async def change_message(request: web.Request) -> web.Response:
    state = request.app[STATE]
    checked = await _verified(request)
    if isinstance(checked, web.Response):
        return checked
    _, event = checked
    record = state.messages.get(request.match_info["message_id"])
    if record is None or record["deleted"]:
        return _error(404, "message_not_found", "no such message")
    if request.method == "DELETE":
        record["deleted"] = True
    else:
        record["edits"].append(event["data"].get("text", ""))
    return web.json_response({"ok": True})


async def query_target(request: web.Request) -> web.Response:
    state = request.app[STATE]
    checked = await _verified(request)
    if isinstance(checked, web.Response):
        return checked
    target = _target(state, checked[1]["data"])
    if isinstance(target, web.Response):
        return target
    return web.json_response({"member_count": target.members})


async def sim_messages(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].messages)


async def sim_targets(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for target_id, spec in (await request.json()).items():
        state.targets[target_id] = GatewayTarget(int(spec.get("members", 20)), spec.get("status", "ok"))
    return web.json_response({"targets": len(state.targets)})


async def sim_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.configure(FaultConfig(**await request.json()))
    return web.json_response({"ok": True})


def create_app(
    secret: str,
    *,
    per_second: int | None = None,
    faults: FaultConfig | None = None,
    auto_targets: bool = True,
    inbound_url: str = "",
    inbound_secret: str = "",
    reply_rate: float = 0.0,
) -> web.Application:
    state = GatewayState(
        secret=secret,
        per_second=per_second,
        auto_targets=auto_targets,
        inbound_url=inbound_url,
        inbound_secret=inbound_secret,
        reply_rate=reply_rate,
    )
    if faults is not None:
        state.faults.configure(faults)
    app = web.Application(middlewares=[fault_middleware(state.faults)], client_max_size=MAX_BODY * 4)
    app[STATE] = state
    app.router.add_post("/v1/messages", send_message)
    app.router.add_patch("/v1/messages/{message_id}", change_message)
    app.router.add_delete("/v1/messages/{message_id}", change_message)
    app.router.add_post("/v1/targets/query", query_target)
    app.router.add_get("/__sim/messages", sim_messages)
    app.router.add_post("/__sim/targets", sim_targets)
    app.router.add_post("/__sim/faults", sim_faults)
    app.on_cleanup.append(_close)
    return app
