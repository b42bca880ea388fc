"""The Facebook Page adapter against the sandbox Graph API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.facebook import FacebookSender, business_wait, translate
from adapters.http import Reply
from adapters.sandbox.common import FaultConfig, Running
from adapters.sandbox.facebook import STATE, create_app
from broadcaster.domain.errors import AuthFailed, PermanentError, RateLimited, TargetGone, TransientError
from broadcaster.domain.ports import Media, Target
from broadcaster.domain.secrets import Secret
from content.render import render

PAGE = Target("facebook", "104857600123456", "Sở KH&CN Lai Châu")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def server() -> AsyncIterator[Running]:
    async with Running(create_app()) as running:
        running.app[STATE].add_page(PAGE.external_id, "page-token-abc", name="Sở KH&CN", followers=3456)
        yield running


@pytest.fixture
async def sender(server: Running) -> AsyncIterator[FacebookSender]:
    s = FacebookSender(Secret("page-token-abc"), base_url=server.url, version="v23.0")
    yield s
    await s.close()


def _photo(n: int) -> Media:
    return Media(f"{n:064x}", f"anh{n}.png", "image/png", PNG)


async def test_posts_edit_delete_followers(server: Running, sender: FacebookSender) -> None:
    state = server.app[STATE]
    text = render("facebook", title="Dịch vụ công", body="Xem tại https://dichvucong.gov.vn")
    feed = await sender.send(PAGE, text, "d1")
    post = state.posts[feed.message_ids[0]]
    assert post["link"] == "https://dichvucong.gov.vn" and post["message"].startswith("Dịch vụ công")
    one = await sender.send(PAGE, render("facebook", title="Ảnh", body="một ảnh", media=[_photo(1)]), "d2")
    assert state.posts[one.message_ids[0]]["photo"] in state.photos
    many = await sender.send(
        PAGE, render("facebook", title="Ảnh", body="ba ảnh", media=[_photo(i) for i in (2, 3, 4)]), "d3"
    )
    attached = state.posts[many.message_ids[0]]["attached_media"]
    assert len(attached) == 3 and all(not state.photos[a]["published"] for a in attached)
    await sender.edit(PAGE, feed.message_ids[0], render("facebook", title="Đính chính", body="nội dung đúng"))
    assert state.posts[feed.message_ids[0]]["message"] == "Đính chính\n\nnội dung đúng"
    await sender.delete(PAGE, feed.message_ids)
    assert feed.message_ids[0] not in state.posts
    await sender.delete(PAGE, feed.message_ids)  # already gone (100/33): deleted, a recall may run twice
    with pytest.raises(PermanentError, match=r"100/33.*no longer there"):
        await sender.edit(PAGE, feed.message_ids[0], render("facebook", title="", body="muộn"))
    assert await sender.member_count(PAGE) == 3456


async def test_errors(server: Running, sender: FacebookSender) -> None:
    state = server.app[STATE]
    msg = render("facebook", title="", body="tin")
    bad = FacebookSender(Secret("wrong-token"), base_url=server.url)
    with pytest.raises(AuthFailed, match="Graph error 190"):
        await bad.send(PAGE, msg, "k")
    await bad.close()
    with pytest.raises(PermanentError, match="Graph error 200"):
        await sender.send(Target("facebook", "group123"), msg, "k")
    with pytest.raises(TargetGone, match="100/33"):
        await sender.send(Target("facebook", "999"), msg, "k")
    await sender.send(PAGE, render("facebook", title="", body="lặp lại"), "k1")
    with pytest.raises(PermanentError, match="506"):
        await sender.send(PAGE, render("facebook", title="", body="lặp lại"), "k2")
    for code, kind in ((4, RateLimited), (613, RateLimited), (1, TransientError), (368, PermanentError)):
        state.inject.append((code, None))
        with pytest.raises(kind, match=f"Graph error {code}"):
            await sender.send(PAGE, render("facebook", title="", body=f"mã {code}"), "k")
    state.budget = 1
    state.pages[PAGE.external_id].calls.clear()
    await sender.member_count(PAGE)
    with pytest.raises(RateLimited, match="80001") as limited:
        await sender.send(PAGE, msg, "k")
    assert 60 <= limited.value.retry_after <= 3600  # from estimated_time_to_regain_access, in minutes
    state.budget = None
    state.faults.configure(FaultConfig(error_rate=1.0))
    with pytest.raises(TransientError, match="HTTP 502 without a Graph error"):
        await sender.send(PAGE, msg, "k")
    state.faults.configure(FaultConfig())


async def test_comments_come_back_signed_like_meta(server: Running, sender: FacebookSender) -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hooks/facebook/fb", hook)
    async with Running(app) as receiver:
        state = server.app[STATE]
        state.webhook_url, state.comment_rate = f"{receiver.url}/hooks/facebook/fb", 1.0
        result = await sender.send(PAGE, render("facebook", title="", body="Bài mới"), "k")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
    headers, body = seen[0]
    expected = "sha256=" + hmac.new(state.app_secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected
    assert b"\\u" in body  # non-ASCII escaped, as Meta sends it
    changes = [c["value"] for c in json.loads(body)["entry"][0]["changes"]]
    assert [c["item"] for c in changes] == ["comment", "reaction"]
    assert all(c["post_id"] == result.message_ids[0] for c in changes)


def test_translation_table_without_sockets() -> None:
    def reply(status: int, body: object, headers: dict[str, str] | None = None) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Reply(status, headers or {}, raw)

    def err(code: int, subcode: int | None = None, **extra: object) -> dict[str, object]:
        return {"error": {"code": code, "error_subcode": subcode, "message": "m", **extra}}

    assert translate(reply(200, {"id": "1_2"}), "x") is None
    usage = {
        "x-business-use-case-usage": json.dumps(
            {"1": [{"type": "pages", "estimated_time_to_regain_access": 7}]}
        )
    }
    limited = translate(reply(400, err(80001), usage), "x")
    assert isinstance(limited, RateLimited) and limited.retry_after == 420
    plain = translate(reply(403, err(4)), "x")
    assert isinstance(plain, RateLimited) and plain.retry_after == 60
    for code in (17, 32, 613):
        assert type(translate(reply(400, err(code)), "x")) is RateLimited
    assert type(translate(reply(400, err(190, 463)), "x")) is AuthFailed
    for code in (100, 200, 10, 368, 506):
        assert type(translate(reply(400, err(code)), "x")) is PermanentError
    assert type(translate(reply(400, err(100, 33)), "x")) is TargetGone
    assert type(translate(reply(500, err(2)), "x")) is TransientError
    assert type(translate(reply(400, err(9000, is_transient=True)), "x")) is TransientError
    assert type(translate(reply(502, b"<html>Bad gateway</html>"), "x")) is TransientError
    assert type(translate(reply(404, b"not json"), "x")) is PermanentError
    assert business_wait({"X-Business-Use-Case-Usage": "not json"}) is None
