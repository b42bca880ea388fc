"""The Telegram adapter (PTB + aiohttp) against the sandbox Bot API server, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
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

from adapters.sandbox.common import FaultConfig, Running
from adapters.sandbox.telegram import STATE, Chat, Limits, Members, create_app
from adapters.telegram import TelegramSender, translate
from broadcaster.domain.errors import (
    AuthFailed,
    NotSupported,
    PermanentError,
    RateLimited,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.ports import Media, RenderedMessage, Sender, Target
from broadcaster.domain.secrets import Secret
from content.render import render

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
GROUP = Target("telegram", "-1001000000001", "CNS_Xã Mù Cả")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


@pytest.fixture
async def server() -> AsyncIterator[Running]:
    async with Running(create_app([TOKEN], auto_chats=False)) as running:
        running.app[STATE].chats[-1001000000001] = Chat(
            -1001000000001, "supergroup", "CNS_Xã Mù Cả", members=42
        )
        yield running


@pytest.fixture
async def sender(server: Running) -> AsyncIterator[TelegramSender]:
    s = TelegramSender(Secret(TOKEN), base_url=server.url)
    yield s
    await s.close()


def _photo(n: int) -> Media:
    return Media(f"{n:064x}", f"anh-{n}.png", "image/png", PNG)


async def test_text_parts_media_edit_delete_count(server: Running, sender: TelegramSender) -> None:
    assert isinstance(sender, Sender)
    state = server.app[STATE]
    long_body = "\n\n".join(["Đoạn **văn** về dịch vụ công & thanh toán < 5 phút. " * 20] * 8)
    message = render("telegram", title="Hướng dẫn", body=long_body)
    assert len(message.parts) > 1
    result = await sender.send(GROUP, message, "d1")
    assert len(result.message_ids) == len(message.parts)
    stored = state.messages
    assert stored[0]["text"] == message.parts[0] and stored[0]["text"].startswith("(1/")
    # one photo, short text: one sendPhoto with the text as caption
    captioned = render("telegram", title="Ảnh", body="Xem ảnh", media=[_photo(1)])
    one = await sender.send(GROUP, captioned, "d2")
    assert len(one.message_ids) == 1 and state.messages[-1]["caption"] == "<b>Ảnh</b>\n\nXem ảnh"
    # three photos and a document: the text, an album of three, then the document
    pdf = Media("f" * 64, "huong-dan.pdf", "application/pdf", b"%PDF-1.4 x")
    mixed = render("telegram", title="Tài liệu", body="Xem", media=[_photo(2), _photo(3), _photo(4), pdf])
    many = await sender.send(GROUP, mixed, "d3")
    assert len(many.message_ids) == 5
    album = state.messages[-4:-1]
    assert len({m["media_group_id"] for m in album}) == 1 and all("photo" in m for m in album)
    assert state.messages[-1]["document"]["file_name"] == "huong-dan.pdf"
    await sender.edit(GROUP, result.message_ids[0], render("telegram", title="Sửa", body="Nội dung mới"))
    assert state.by_chat[-1001000000001][int(result.message_ids[0])]["text"] == "<b>Sửa</b>\n\nNội dung mới"
    await sender.delete(GROUP, one.message_ids)
    await sender.delete(GROUP, one.message_ids)  # "message to delete not found": deleted already
    assert await sender.member_count(GROUP) == 42


async def test_target_errors(server: Running, sender: TelegramSender) -> None:
    state = server.app[STATE]
    msg = render("telegram", title="", body="x")
    state.chats[-2] = Chat(-2, "supergroup", bot_status="kicked")
    with pytest.raises(TargetGone, match="Forbidden: bot was kicked from the supergroup chat"):
        await sender.send(Target("telegram", "-2"), msg, "k")
    state.chats[-3] = Chat(-3, "group", bot_status="left")
    with pytest.raises(TargetGone, match="not a member of the group chat"):
        await sender.send(Target("telegram", "-3"), msg, "k")
    state.chats[-4] = Chat(-4, "group", migrated_to=-1009999)
    with pytest.raises(TargetMigrated) as migrated:
        await sender.send(Target("telegram", "-4"), msg, "k")
    assert migrated.value.new_id == "-1009999"
    with pytest.raises(TargetGone, match="Chat not found"):
        await sender.send(Target("telegram", "-5"), msg, "k")
    state.chats[-6] = Chat(-6, "channel", bot_status="member")
    with pytest.raises(PermanentError, match="Need administrator rights"):
        await sender.send(Target("telegram", "-6"), msg, "k")


async def test_content_errors(sender: TelegramSender) -> None:
    too_long = RenderedMessage(parts=("é" * 4097,), fmt="html", plain_parts=("é" * 4097,))
    with pytest.raises(PermanentError, match="Message is too long"):
        await sender.send(GROUP, too_long, "k")
    broken = RenderedMessage(parts=("<b>unclosed",), fmt="html", plain_parts=("unclosed",))
    with pytest.raises(PermanentError, match="Can't parse entities"):
        await sender.send(GROUP, broken, "k")
    emoji = RenderedMessage(parts=("😀" * 2049,), fmt="html", plain_parts=("",))  # 4,098 UTF-16 units
    with pytest.raises(PermanentError, match="too long"):
        await sender.send(GROUP, emoji, "k")


async def test_flood_control_and_retry_after(server: Running, sender: TelegramSender) -> None:
    state = server.app[STATE]
    state.limits = Limits(per_bot=30, per_group=2)
    msg = render("telegram", title="", body="x")
    await sender.send(GROUP, msg, "a")
    await sender.send(GROUP, msg, "b")
    with pytest.raises(RateLimited) as limited:
        await sender.send(GROUP, msg, "c")
    assert 1 <= limited.value.retry_after <= 60
    with pytest.raises(RateLimited):  # still blocked until retry_after has elapsed
        await sender.send(GROUP, msg, "d")
    state.limits = Limits(per_bot=3, per_group=None)
    state.group_blocked.clear()
    other = [Target("telegram", str(-100 - i)) for i in range(4)]
    for t in other:
        state.chats[int(t.external_id)] = Chat(int(t.external_id))
    for t in other[:3]:
        await sender.send(t, msg, "e")
    with pytest.raises(RateLimited, match="Flood control exceeded"):
        await sender.send(other[3], msg, "f")


async def test_bad_token_and_faults(server: Running) -> None:
    wrong = TelegramSender(Secret("987654321:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), base_url=server.url)
    with pytest.raises(AuthFailed) as refused:
        await wrong.send(GROUP, render("telegram", title="", body="x"), "k")
    assert "AAAAAAAA" not in str(refused.value)
    await wrong.close()
    state = server.app[STATE]
    sender = TelegramSender(Secret(TOKEN), base_url=server.url, read_timeout=0.3)
    msg = render("telegram", title="", body="x")
    await sender.member_count(GROUP)  # getMe done before the faults start
    try:
        for config in (
            FaultConfig(error_rate=1.0),
            FaultConfig(drop_rate=1.0),
            FaultConfig(timeout_rate=1.0, hang=1.0),
        ):
            state.faults.configure(config)
            with pytest.raises(TransientError) as failed:
                await sender.send(GROUP, msg, "k")
            assert TOKEN not in str(failed.value) and TOKEN.split(":")[1] not in repr(failed.value)
    finally:
        state.faults.configure(FaultConfig())
        await sender.close()


async def test_answers_that_are_not_the_bot_api() -> None:
    """What a proxy or a broken gateway in front of the Bot API may answer: a 200 that is not JSON, a
    JSON 200 without a message, an HTML 502. None is a send; each is a transient error, token-free."""
    answers = [
        (200, "text/html", "<html>captive portal</html>"),
        (200, "application/json", '{"ok": true, "result": true}'),
        (502, "text/html", "<html>502 Bad Gateway</html>"),
    ]

    async def get_me(_: web.Request) -> web.Response:
        bot = {"id": 123456789, "is_bot": True, "first_name": "CNS", "username": "cns_bot"}
        return web.json_response({"ok": True, "result": bot})

    async def send_message(_: web.Request) -> web.Response:
        status, kind, body = answers.pop(0)
        return web.Response(status=status, text=body, content_type=kind)

    app = web.Application()
    app.router.add_post(f"/bot{TOKEN}/getMe", get_me)
    app.router.add_post(f"/bot{TOKEN}/sendMessage", send_message)
    async with Running(app) as running:
        sender = TelegramSender(Secret(TOKEN), base_url=running.url)
        try:
            for _ in range(3):
                with pytest.raises(TransientError) as failed:
                    await sender.send(GROUP, render("telegram", title="", body="x"), "k")
                assert TOKEN.split(":")[1] not in str(failed.value)
        finally:
            await sender.close()
    assert answers == []


async def test_members_reply_to_the_bots_webhook(server: Running, sender: TelegramSender) -> None:
    received: list[tuple[dict[str, str], dict[str, object]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.json()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hooks/telegram/tg", hook)
    async with Running(app) as receiver:
        state = server.app[STATE]
        state.members = Members(reply_rate=1.0, react_rate=1.0, delay=0.0)
        state.chats[-1001000000001].bot_status = "administrator"
        bot = await sender._bot()
        await bot.set_webhook(
            f"{receiver.url}/hooks/telegram/tg",
            secret_token="s3cr3t_token",
            allowed_updates=["message", "message_reaction"],
        )
        result = await sender.send(GROUP, render("telegram", title="", body="Tin mới"), "k")
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.02)
    kinds = {next(k for k in update if k != "update_id"): (headers, update) for headers, update in received}
    headers, reply = kinds["message"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cr3t_token"
    assert reply["message"]["reply_to_message"]["message_id"] == int(result.message_ids[0])  # type: ignore[index]
    assert kinds["message_reaction"][1]["message_reaction"]["new_reaction"][0]["emoji"] == "👍"  # type: ignore[index]


def test_translation_table_without_sockets() -> None:
    def cases() -> list[tuple[TelegramError, type]]:
        return [
            (RetryAfter(7), RateLimited),
            (ChatMigrated(-100123), TargetMigrated),
            (Forbidden("Forbidden: bot was blocked by the user"), TargetGone),
            (InvalidToken("Unauthorized"), AuthFailed),
            (TimedOut(), TransientError),
            (BadRequest("Chat not found"), TargetGone),
            (BadRequest("Message is too long"), PermanentError),
            (Conflict("Conflict: terminated by other getUpdates request"), PermanentError),
            (NetworkError("Bad Gateway"), TransientError),
            (TelegramError("Invalid server response"), TransientError),
        ]

    for exc, expected in cases():
        assert type(translate(exc, "x")) is expected, exc
    limited = translate(RetryAfter(7), "x")
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0
    migrated = translate(ChatMigrated(-100123), "x")
    assert isinstance(migrated, TargetMigrated) and migrated.new_id == "-100123"


async def test_a_captioned_post_is_edited_by_caption_or_media_never_by_text(
    server: Running, sender: TelegramSender
) -> None:
    """Telegram refuses editMessageText on a photo/document ("there is no text in the message to
    edit"), and so does the sandbox: the caption is edited with editMessageCaption, a changed attachment
    with editMessageMedia, and a new revision without attachment cannot be an edit (NotSupported)."""
    state = server.app[STATE]
    sent = await sender.send(GROUP, render("telegram", title="Ảnh", body="Xem ảnh", media=[_photo(1)]), "d1")
    chat = state.by_chat[-1001000000001]
    (message_id,) = sent.message_ids
    before = chat[int(message_id)]["photo"][0]["file_id"]
    with pytest.raises(NotSupported, match="no attachment"):
        await sender.edit(GROUP, message_id, render("telegram", title="Ảnh", body="Chữ thôi"))
    same = render("telegram", title="Ảnh", body="Chú thích mới", media=[_photo(1)])
    await sender.edit(GROUP, message_id, replace(same, keep_media=True))
    edited = chat[int(message_id)]
    assert edited["caption"] == "<b>Ảnh</b>\n\nChú thích mới" and edited["photo"][0]["file_id"] == before
    pdf = Media("e" * 64, "mau-don.pdf", "application/pdf", b"%PDF-1.4 y")
    await sender.edit(GROUP, message_id, render("telegram", title="Tài liệu", body="Mẫu đơn", media=[pdf]))
    replaced = chat[int(message_id)]
    assert "photo" not in replaced and replaced["document"]["file_name"] == "mau-don.pdf"
    assert replaced["caption"] == "<b>Tài liệu</b>\n\nMẫu đơn"
    text = await sender.send(GROUP, render("telegram", title="Tin", body="Chữ"), "d2")
    await sender.edit(GROUP, text.message_ids[0], render("telegram", title="Tin", body="Chữ mới"))
    assert chat[int(text.message_ids[0])]["text"] == "<b>Tin</b>\n\nChữ mới"
