"""The webhook adapter against the sandbox gateway, over real HTTP; signatures checked independently."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from adapters import signing
from adapters.http import Reply
from adapters.sandbox.common import FaultConfig, Running, SlidingWindow
from adapters.sandbox.webhook_gateway import STATE, GatewayTarget, create_app
from adapters.webhook import WebhookSender, translate
from broadcaster.domain.errors import (
    AuthFailed,
    ConfigError,
    PermanentError,
    RateLimited,
    TargetGone,
    TransientError,
)
from broadcaster.domain.ports import Media, Sender, Target
from broadcaster.domain.secrets import Secret
from content.render import render

SECRET = "whsec_" + base64.b64encode(b"sandbox-secret-32-bytes-long!!!!").decode()
TARGET = Target("webhook", "grp-1", "CNS_Bản Mù Cả_Xã Mù Cả")


@pytest.fixture
async def gateway() -> AsyncIterator[Running]:
    async with Running(create_app(SECRET)) as running:
        yield running


@pytest.fixture
async def sender(gateway: Running) -> AsyncIterator[WebhookSender]:
    s = WebhookSender(gateway.url, Secret(SECRET))
    yield s
    await s.close()


def _message(body: str = "Chào {unit_name}") -> object:
    return render("webhook", title="Tiêu đề", body=body, variables={"unit_name": "Bản Mù Cả"})


async def test_send_edit_delete_and_members(gateway: Running, sender: WebhookSender) -> None:
    assert isinstance(sender, Sender)
    result = await sender.send(TARGET, _message(), "delivery-1")  # type: ignore[arg-type]
    assert result.accepted_only and result.message_ids == ("m_1",)
    state = gateway.app[STATE]
    stored = state.messages["m_1"]
    assert stored["data"]["text"] == "Tiêu đề\n\nChào Bản Mù Cả"
    assert stored["event_id"] == "delivery-1"
    again = await sender.send(TARGET, _message(), "delivery-1")  # type: ignore[arg-type]
    assert again.message_ids == ("m_1",) and len(state.messages) == 1  # the retry is de-duplicated
    await sender.edit(TARGET, "m_1", _message("Sửa lại"))  # type: ignore[arg-type]
    assert stored["edits"] == ["Tiêu đề\n\nSửa lại"]
    await sender.delete(TARGET, ("m_1",))
    assert stored["deleted"]
    assert await sender.member_count(TARGET) == state.targets["grp-1"].members


async def test_error_classes(gateway: Running, sender: WebhookSender) -> None:
    state = gateway.app[STATE]
    state.auto_targets = False
    with pytest.raises(TargetGone, match="HTTP 404 target_not_found"):
        await sender.send(Target("webhook", "nope"), _message(), "k1")  # type: ignore[arg-type]
    state.targets["gone"] = GatewayTarget(5, "gone")
    with pytest.raises(TargetGone, match="410"):
        await sender.send(Target("webhook", "gone"), _message(), "k2")  # type: ignore[arg-type]
    wrong = WebhookSender(
        gateway.url, Secret("whsec_" + base64.b64encode(b"another-secret-of-32-bytes!!!!!!").decode())
    )
    with pytest.raises(AuthFailed, match="401 bad_signature"):
        await wrong.send(TARGET, _message(), "k3")  # type: ignore[arg-type]
    await wrong.close()
    state.targets["grp-1"] = GatewayTarget(9)
    with pytest.raises(PermanentError, match="413"):
        await sender.send(TARGET, _message("x" * 70_000), "k4")  # type: ignore[arg-type]
    state.window = SlidingWindow(1, 60)
    await sender.send(TARGET, _message(), "k5")  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as limited:
        await sender.send(TARGET, _message(), "k6")  # type: ignore[arg-type]
    assert 1 <= limited.value.retry_after <= 60


async def test_faults_become_transient_errors(gateway: Running) -> None:
    state = gateway.app[STATE]
    sender = WebhookSender(
        gateway.url, Secret(SECRET), session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5))
    )
    try:
        for config, message, maybe_read in (
            (FaultConfig(error_rate=1.0), "HTTP 502", False),
            (FaultConfig(drop_rate=1.0), "webhook send: (ServerDisconnectedError|ClientOSError)", True),
            (FaultConfig(timeout_rate=1.0, hang=2.0), "timed out", True),
        ):
            state.faults.configure(config)
            with pytest.raises(TransientError, match=message) as failed:
                await sender.send(TARGET, _message(), f"f-{message}")  # type: ignore[arg-type]
            assert failed.value.maybe_sent is maybe_read  # a 502 was refused; the others may have been read
        state.faults.configure(FaultConfig(burst_every=3, burst_length=2))
        outcomes = []
        for i in range(6):
            try:
                await sender.send(TARGET, _message(), f"b{i}")  # type: ignore[arg-type]
                outcomes.append("ok")
            except TransientError:
                outcomes.append("5xx")
        assert outcomes == ["ok", "ok", "5xx", "5xx", "ok", "5xx"]
    finally:
        await sender._session.close()


async def test_signature_verified_by_the_reference_implementation() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.json_response({"partner_message_id": "x"}, status=200)

    app = web.Application()
    app.router.add_post("/v1/messages", capture)
    async with Running(app) as running:
        sender = WebhookSender(running.url, Secret(SECRET))
        photo = Media("ab" * 32, "anh.png", "image/png", b"\x89PNG", url="https://cns.example/a/ab")
        message = render("webhook", title="T", body="Bà con **Mù Cả**", media=[photo])
        result = await sender.send(TARGET, message, "msg_2Xyz")
        await sender.close()
    assert result.message_ids == ("x",) and not result.accepted_only
    headers, body = seen[0]
    payload = Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers.items()})
    assert payload["type"] == "message.send"
    assert payload["data"]["attachments"][0]["sha256"] == "ab" * 32
    assert headers["webhook-id"] == "msg_2Xyz"
    # and our verifier agrees with the reference signer
    ref = Webhook(SECRET)
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    sig = ref.sign("msg_1", now, body.decode())
    assert (
        signing.verify(
            SECRET,
            {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": sig},
            body,
        )
        == "msg_1"
    )


def test_translation_table_without_sockets() -> None:
    def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, headers or {}, body)

    assert translate(reply(200), "x") is None
    assert isinstance(translate(reply(401), "x"), AuthFailed)
    for status in (403, 404, 410):
        assert isinstance(translate(reply(status), "x"), TargetGone)
    for status in (400, 413, 422):
        error = translate(reply(status), "x")
        assert isinstance(error, PermanentError) and not isinstance(error, TargetGone)
    limited = translate(reply(429, headers={"Retry-After": "7"}), "x")
    assert isinstance(limited, RateLimited) and limited.retry_after == 7
    for status in (301, 500, 502, 503):
        assert type(translate(reply(status, b"<html>oops</html>"), "x")) is TransientError
    assert "x: HTTP 409 conflict" in str(translate(reply(409, b'{"error":{"code":"conflict"}}'), "x"))


async def test_gateway_members_reply_signed_with_its_own_secret() -> None:
    inbound = "whsec_" + base64.b64encode(b"inbound-secret-of-the-gateway!!!").decode()
    seen: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/webhook/bridge", hook)
    async with (
        Running(app) as receiver,
        Running(
            create_app(
                SECRET,
                inbound_url=f"{receiver.url}/hooks/webhook/bridge",
                inbound_secret=inbound,
                reply_rate=1.0,
            )
        ) as gateway,
    ):
        sender = WebhookSender(gateway.url, Secret(SECRET))
        result = await sender.send(TARGET, _message(), "delivery-9")  # type: ignore[arg-type]
        await sender.close()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
    headers, body = seen[0]
    event = Webhook(inbound).verify(body, {k.lower(): v for k, v in headers.items()})
    assert event["type"] == "message.reply"
    assert event["data"]["delivery_id"] == "delivery-9"
    assert event["data"]["partner_message_id"] == result.message_ids[0]


async def test_a_secret_without_base64_padding_is_accepted_as_the_reference_library_does() -> None:
    """``whsec_`` keys whose base64 leaves out its ``=`` padding are valid for the Standard Webhooks
    reference library; both our signing and the gateway's own signer accept them."""
    unpadded = "whsec_" + base64.b64encode(b"a 31-byte key of this bridge!!!").decode().rstrip("=")
    assert not unpadded.endswith("=") and len(unpadded.removeprefix("whsec_")) % 4
    headers = signing.headers(unpadded, "msg_1", b'{"a": 1}')
    Webhook(unpadded).verify(b'{"a": 1}', headers)  # the reference agrees
    async with Running(create_app(unpadded)) as gateway:
        sender = WebhookSender(gateway.url, Secret(unpadded))
        try:
            result = await sender.send(TARGET, _message(), "delivery-9")  # type: ignore[arg-type]
        finally:
            await sender.close()
    assert result.message_ids == ("m_1",)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", "whsec_a"])
def test_a_secret_that_cannot_be_decoded_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ConfigError, match="whsec_ followed by base64"):
        WebhookSender("http://127.0.0.1:9", Secret(secret))
