"""Relay through the admins' own channels, and the in-memory twin."""

from __future__ import annotations

import pytest

from adapters.memory import MemorySender
from adapters.relay import RelaySender
from adapters.sandbox.common import Running
from adapters.sandbox.telegram import STATE, Chat, create_app
from adapters.telegram import TelegramSender
from broadcaster.domain.errors import PermanentError, RateLimited, TargetGone
from broadcaster.domain.ports import Admin, Sender, Target
from broadcaster.domain.secrets import Secret
from content.render import render

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
GROUP = Target(
    "zalo",
    "relay-03451-01",
    "CNS_Bản Mù Cả_Xã Mù Cả",
    mode="relay",
    admins=(
        Admin("Lò Văn Pọm", "zalo", "2512"),
        Admin("Tao Thị Hoa", "telegram", "555"),
        Admin("Vàng A Sử", "phone", "0912"),
    ),
)


def _relay(zalo: Sender, telegram: Sender) -> RelaySender:
    return RelaySender({"zalo": zalo, "telegram": telegram}, lambda key: f"https://cns.example/r/{key}")


async def test_post_reaches_each_admin_with_note_and_link() -> None:
    zalo, telegram = MemorySender("zalo"), MemorySender("telegram")
    relay = _relay(zalo, telegram)
    assert isinstance(relay, Sender)
    message = render("zalo", title="Thông báo", body="Nộp hồ sơ <trực tuyến> & nhanh")
    result = await relay.send(GROUP, message, "d42")
    # note, post, link: the post stands alone so the admin can forward it as it is
    assert result.accepted_only and len(result.message_ids) == 6
    to_zalo = zalo.sent["2512"][0]
    assert to_zalo.parts[0].startswith(
        "Kính gửi Lò Văn Pọm: nhờ anh/chị đăng tin dưới đây vào nhóm «CNS_Bản Mù Cả"
    )
    assert to_zalo.parts[1] == "Thông báo\n\nNộp hồ sơ <trực tuyến> & nhanh"
    assert to_zalo.parts[-1] == "Đăng xong, bấm để xác nhận: https://cns.example/r/d42"
    to_tg = telegram.sent["555"][0]
    assert to_tg.fmt == "html" and to_tg.parts[1] == "Thông báo\n\nNộp hồ sơ &lt;trực tuyến&gt; &amp; nhanh"
    assert await relay.member_count(GROUP) is None


async def test_partial_and_total_failure() -> None:
    zalo, telegram = MemorySender("zalo"), MemorySender("telegram")
    relay = _relay(zalo, telegram)
    message = render("zalo", title="", body="x")
    zalo.fail_next(TargetGone("zalo: -213 not a follower"))
    partial = await relay.send(GROUP, message, "k")
    assert {i.split(":")[0] for i in partial.message_ids} == {"telegram"}
    zalo.fail_next(RateLimited("zalo -32", 60))
    telegram.fail_next(TargetGone("blocked"))
    with pytest.raises(RateLimited):
        await relay.send(GROUP, message, "k")
    nobody = Target("zalo", "g", "CNS_X", mode="relay", admins=(Admin("A", "phone", "09"),))
    with pytest.raises(PermanentError, match="no admin of CNS_X has a configured channel"):
        await relay.send(nobody, message, "k")


async def test_recall_and_correction_notify_admins() -> None:
    zalo, telegram = MemorySender("zalo"), MemorySender("telegram")
    relay = _relay(zalo, telegram)
    await relay.delete(GROUP, ("zalo:2512:1",))
    assert "được thu hồi" in zalo.sent["2512"][0].parts[0]
    await relay.edit(GROUP, "zalo:2512:1", render("zalo", title="Đính chính", body="y"))
    assert "đính chính" in zalo.sent["2512"][1].parts[0]


async def test_relay_over_the_telegram_sandbox_passes_its_html_parser() -> None:
    async with Running(create_app([TOKEN], auto_chats=False)) as server:
        server.app[STATE].chats[555] = Chat(555, "private")
        server.app[STATE].chats[666] = Chat(666, "private", bot_status="kicked")
        telegram = TelegramSender(Secret(TOKEN), base_url=server.url)
        relay = RelaySender({"telegram": telegram}, lambda key: f"https://cns.example/r/{key}?a=1&b=2")
        try:
            message = render("zalo", title="A < B", body="x & y")
            result = await relay.send(GROUP, message, "d1")
            assert len(result.message_ids) == 3  # note, post, link
            texts = [m["text"] for m in server.app[STATE].messages]
            assert texts[1] == "A &lt; B\n\nx &amp; y" and texts[2].endswith("?a=1&amp;b=2")
            blocked = Target("zalo", "g", "CNS_X", mode="relay", admins=(Admin("B", "telegram", "666"),))
            with pytest.raises(TargetGone, match="blocked by the user"):
                await relay.send(blocked, message, "d2")
        finally:
            await telegram.close()


async def test_memory_twin() -> None:
    memory = MemorySender("zalo", members={"g": 12}, can_delete=False)
    target = Target("zalo", "g")
    result = await memory.send(target, render("zalo", title="", body="x"), "k")
    assert result.message_ids == ("1",) and memory.keys == ["k"]
    assert await memory.member_count(target) == 12
    assert await memory.member_count(Target("zalo", "other")) is None
    with pytest.raises(PermanentError):
        await memory.delete(target, result.message_ids)
    memory.gone.add("g")
    with pytest.raises(TargetGone):
        await memory.send(target, render("zalo", title="", body="x"), "k2")
    await memory.close()
    assert memory.closed


async def test_malformed_answers_are_transient_for_every_adapter(tmp_path: object) -> None:
    """A 200 carrying an HTML page (a captive portal, a proxy) never crashes an adapter."""
    import base64
    import time
    from pathlib import Path

    from adapters.facebook import FacebookSender
    from adapters.sandbox import facebook as fb_box
    from adapters.sandbox import webhook_gateway as wh_box
    from adapters.sandbox import zalo as zalo_box
    from adapters.sandbox.common import FaultConfig
    from adapters.webhook import WebhookSender
    from adapters.zalo import ZaloSender
    from broadcaster.domain.errors import TransientError
    from broadcaster.domain.ports import OAuthTokens
    from broadcaster.storage.token_store import FileTokenStore

    malformed = FaultConfig(malformed_rate=1.0)
    secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    async with (
        Running(create_app([TOKEN])) as tg,
        Running(zalo_box.create_app()) as zl,
        Running(fb_box.create_app()) as fb,
        Running(wh_box.create_app(secret)) as wh,
    ):
        fb.app[fb_box.STATE].add_page("1", "tok")
        pair = zl.app[zalo_box.STATE].issue()
        store = FileTokenStore(Path(str(tmp_path)) / "z.json")
        await store.save(OAuthTokens(pair["access_token"], pair["refresh_token"], time.time() + 9e4))
        zstate = zl.app[zalo_box.STATE]
        senders: list[tuple[Sender, Target, Running]] = [
            (TelegramSender(Secret(TOKEN), base_url=tg.url), Target("telegram", "-1001"), tg),
            (
                ZaloSender(
                    store,
                    app_id=zstate.app_id,
                    app_secret=Secret(zstate.app_secret),
                    base_url=zl.url,
                    oauth_url=zl.url,
                ),
                Target("zalo", "g1"),
                zl,
            ),
            (FacebookSender(Secret("tok"), base_url=fb.url), Target("facebook", "1"), fb),
            (WebhookSender(wh.url, Secret(secret)), Target("webhook", "t1"), wh),
        ]
        try:
            for sender, target, server in senders:
                if sender.platform == "telegram":
                    await sender.member_count(target)  # getMe first, before the faults
                faults = next(v for k, v in server.app.items() if hasattr(v, "faults")).faults
                faults.configure(malformed)
                with pytest.raises(TransientError):
                    await sender.send(target, render(sender.platform, title="", body="x"), "k")
        finally:
            for sender, _, _ in senders:
                await sender.close()
