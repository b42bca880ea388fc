"""Thousands of randomised malformed and forged requests at every webhook route: never a 500, and
nothing stored. Seeded, so a failure replays."""

from __future__ import annotations

import io
import json
import random
import time

import pytest
from sqlalchemy import func, select

from adapters import signing
from broadcaster.domain.models import InboundEvent
from broadcaster.storage.app import App
from tests.web.world import ZALO_APP, build, client

REQUESTS = 2400
ROUTES = [
    "telegram/tg",
    "zalo/zalo",
    "facebook/fb",
    "webhook/hook",
    "telegram/zalo",
    "webhook/nobody",
    "mocha/x",
]


def _garbage(rng: random.Random) -> bytes:  # noqa: PLR0911 - one return per kind of garbage
    choice = rng.randrange(8)
    if choice == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if choice == 1:
        return b"[" * rng.randrange(1, 5000)  # deep nesting
    if choice == 2:
        return json.dumps(rng.choice([None, 1, "x", [], [1, 2], True])).encode()
    if choice == 3:
        return b'{"update_id": ' + str(rng.random()).encode() + b"}"
    if choice == 4:
        return '{"text": "Đã nhận\ud800"}'.encode("utf-8", "surrogatepass")
    if choice == 5:
        return b'{"object": "page", "entry": [{"id": 1, "changes": "x"}]}'
    if choice == 6:
        return b""
    return json.dumps(
        {"type": "message.reply", "data": {"delivery_id": "delivery-1"}, "n": rng.random()}
    ).encode()


def _headers(rng: random.Random, body: bytes, secrets: dict[str, str]) -> dict[str, str]:
    """Forged: the right header names with wrong, stale, truncated or absent values."""
    headers: dict[str, str] = {}
    if rng.random() < 0.7:
        headers["Content-Type"] = rng.choice(
            ["application/json", "text/plain", "application/x-www-form-urlencoded"]
        )
    kind = rng.randrange(7)
    if kind == 0:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secrets["tg"][:-1]
    elif kind == 1:
        headers["X-ZEvent-Signature"] = "mac=" + rng.randbytes(32).hex()
    elif kind == 2:
        headers["X-Hub-Signature-256"] = rng.choice(
            ["sha256=", "sha1=abc", "sha256=" + rng.randbytes(32).hex(), "é"]
        )
    elif kind == 3:  # signed with another key, or signed correctly but outside the replay window
        key = rng.choice([secrets["hook"], "whsec_" + "QUJD" * 8])
        stamp = time.time() - (rng.choice([400, 10_000, -400]) if key == secrets["hook"] else 0)
        headers.update(signing.headers(key, f"evt_{rng.random()}", body, now=stamp))
    elif kind == 4:
        headers.update({"webhook-id": "a.b", "webhook-timestamp": "nan", "webhook-signature": "v1,@@@"})
    elif kind == 5:
        headers["X-Telegram-Bot-Api-Secret-Token"] = "x" * rng.randrange(0, 300)
    return headers


def _signed(route: str, body: bytes, secrets: dict[str, str]) -> dict[str, str]:
    import hashlib
    import hmac

    platform = route.split("/", maxsplit=1)[0]
    if platform == "telegram":
        return {"X-Telegram-Bot-Api-Secret-Token": secrets["tg"]}
    if platform == "facebook":
        return {
            "X-Hub-Signature-256": "sha256="
            + hmac.new(secrets["fb"].encode(), body, hashlib.sha256).hexdigest()
        }
    if platform == "webhook":
        return signing.headers(secrets["hook"], f"evt_{hashlib.sha256(body).hexdigest()[:8]}", body)
    return {"X-ZEvent-Signature": "mac=" + "0" * 64}  # Zalo's mac needs a JSON body to be checked at all


async def test_malformed_and_forged_requests_never_500_and_store_nothing(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build(app, monkeypatch)
    rng = random.Random(20261128)
    statuses: dict[int, int] = {}
    web = await client(app)
    try:
        for n in range(REQUESTS):
            route = rng.choice(ROUTES)
            body = _garbage(rng)
            if n % 50 == 0:
                body = b"{" + b" " * (app.settings.hook_max_bytes + 1) + b"}"
            if rng.random() < 0.3 and route.startswith("zalo"):  # a Zalo-shaped body with a wrong mac
                body = json.dumps(
                    {"app_id": ZALO_APP, "timestamp": "1", "event_name": "x", "r": rng.random()}
                ).encode()
            method = "GET" if route.startswith("facebook") and rng.random() < 0.1 else "POST"
            if method == "GET":
                params = {
                    "hub.mode": rng.choice(["subscribe", "x"]),
                    "hub.verify_token": "wrong",
                    "hub.challenge": "1",
                }
                response = await web.get(f"/hooks/{route}", params=params)
            else:
                response = await web.post(
                    f"/hooks/{route}", data=io.BytesIO(body), headers=_headers(rng, body, world.secrets)
                )
                if rng.random() < 0.15:  # correctly signed, but not a JSON object: 400, not stored
                    body = rng.choice([b"", b"[1]", b"{oops", b"[" * 3000, b"null", rng.randbytes(40)])
                    response.release()
                    response = await web.post(
                        f"/hooks/{route}", data=body, headers=_signed(route, body, world.secrets)
                    )
            statuses[response.status] = statuses.get(response.status, 0) + 1
            response.release()
    finally:
        await web.close()
    assert sum(statuses.values()) == REQUESTS
    assert all(400 <= status < 500 for status in statuses), statuses
    assert {400, 401, 404, 413} <= set(statuses)  # each kind of refusal was exercised
    async with app.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one() == 0
