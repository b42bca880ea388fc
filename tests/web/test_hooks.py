"""Webhook endpoints over real HTTP: signatures, de-duplication, limits, and what each event does."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from adapters import signing
from broadcaster.bootstrap import hook_codecs
from broadcaster.domain.models import Alert, ChatGroup, Delivery, GroupSuggestion, InboundEvent, Interaction
from broadcaster.inbound.processing import process_pending
from broadcaster.storage.app import App
from tests.web.world import PAGE, ZALO_APP, body, build, client


async def _count(app: App, model: type, *where: object) -> int:
    async with app.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


def tg_reply(update_id: int, chat: str, replied: str, user: int = 555, text: str = "Đã nhận") -> bytes:
    return body(
        {
            "update_id": update_id,
            "message": {
                "message_id": 9000 + update_id,
                "date": int(time.time()),
                "chat": {"id": int(chat), "type": "supergroup", "title": "x"},
                "from": {"id": user, "is_bot": False, "first_name": "Lan"},
                "text": text,
                "reply_to_message": {"message_id": int(replied), "from": {"id": 1, "is_bot": True}},
            },
        }
    )


async def test_telegram_reply_is_stored_once_and_linked_to_its_delivery(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build(app, monkeypatch)
    delivery = world.deliveries["-1000000003451"]
    web = await client(app)
    try:
        headers = {"X-Telegram-Bot-Api-Secret-Token": world.secrets["tg"], "Content-Type": "application/json"}
        # Reply to the second part of the post: still that delivery.
        payload = tg_reply(1, "-1000000003451", delivery.message_ids[1])
        for _ in range(3):  # Telegram redelivers until it gets a 2xx: stored once
            response = await web.post("/hooks/telegram/tg", data=payload, headers=headers)
            assert response.status == 200
        assert await _count(app, InboundEvent) == 1
        wrong = {**headers, "X-Telegram-Bot-Api-Secret-Token": "nope"}
        assert (
            await web.post("/hooks/telegram/tg", data=tg_reply(2, "-1", "1"), headers=wrong)
        ).status == 401
        assert (await web.post("/hooks/telegram/tg", data=b"{not json", headers=headers)).status == 400
        assert (await web.post("/hooks/telegram/nobody", data=payload, headers=headers)).status == 404
        assert (await web.post("/hooks/zalo/tg", data=payload, headers=headers)).status == 404
        big = b'{"update_id": 3, "x": "' + b"a" * (app.settings.hook_max_bytes + 10) + b'"}'
        assert (await web.post("/hooks/telegram/tg", data=io.BytesIO(big), headers=headers)).status == 413
        assert await _count(app, InboundEvent) == 1
    finally:
        await web.close()
    stats = await process_pending(app, hook_codecs())
    assert stats.done == 1
    async with app.sessions() as s:
        reply = (await s.execute(select(Interaction))).scalar_one()
    assert (reply.kind, reply.delivery_id, reply.dispatch_id, reply.text) == (
        "reply",
        delivery.id,
        world.dispatch_id,
        "Đã nhận",
    )
    assert reply.actor_hash and "555" not in reply.actor_hash  # pseudonymised, never the id
    assert await process_pending(app, hook_codecs()) == type(stats)()  # nothing left


async def test_zalo_facebook_and_webhook_events(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await build(app, monkeypatch)
    zalo_delivery = world.deliveries["gmf-345102"]
    fb_delivery = world.deliveries[PAGE]
    hook_delivery = world.deliveries["mocha-345101"]
    web = await client(app)
    try:
        stamp = str(int(time.time() * 1000))
        zalo = body(
            {
                "app_id": ZALO_APP,
                "event_name": "user_send_group_text",
                "timestamp": stamp,
                "sender": {"id": "8000001"},
                "recipient": {"id": "gmf-345102"},
                "message": {
                    "msg_id": "z1",
                    "text": "Bản em nhận rồi",
                    "quote_msg": {"msg_id": zalo_delivery.message_ids[0]},
                },
            }
        )
        mac = hashlib.sha256(
            ZALO_APP.encode() + zalo + stamp.encode() + world.secrets["zalo"].encode()
        ).hexdigest()
        assert (
            await web.post("/hooks/zalo/zalo", data=zalo, headers={"X-ZEvent-Signature": f"mac={mac}"})
        ).status == 200
        assert (
            await web.post("/hooks/zalo/zalo", data=zalo, headers={"X-ZEvent-Signature": "mac=" + "0" * 64})
        ).status == 401

        post_id = fb_delivery.message_ids[0]
        changes = [
            {
                "field": "feed",
                "value": {
                    "from": {"id": "71", "name": "Lò Thị Mai"},
                    "post_id": post_id,
                    "comment_id": "c1",
                    "parent_id": post_id,
                    "verb": "add",
                    "item": "comment",
                    "created_time": int(time.time()),
                    "message": "Cảm ơn Sở",
                },
            },
            {
                "field": "feed",
                "value": {
                    "from": {"id": "72"},
                    "post_id": post_id,
                    "parent_id": post_id,
                    "verb": "add",
                    "item": "reaction",
                    "reaction_type": "love",
                    "created_time": int(time.time()),
                },
            },
            {
                "field": "feed",
                "value": {"from": {"id": PAGE}, "post_id": post_id, "verb": "add", "item": "status"},
            },
        ]
        fb = body(
            {"object": "page", "entry": [{"id": PAGE, "time": int(time.time()), "changes": changes}]},
            ascii_only=True,
        )
        assert b"\\u" in fb  # Meta escapes non-ASCII and signs those bytes
        sig = "sha256=" + hmac.new(world.secrets["fb"].encode(), fb, hashlib.sha256).hexdigest()
        assert (
            await web.post("/hooks/facebook/fb", data=fb, headers={"X-Hub-Signature-256": sig})
        ).status == 200
        reencoded = json.dumps(json.loads(fb), ensure_ascii=False).encode()
        assert (
            await web.post("/hooks/facebook/fb", data=reencoded, headers={"X-Hub-Signature-256": sig})
        ).status == 401
        ok = await web.get(
            "/hooks/facebook/fb",
            params={
                "hub.mode": "subscribe",
                "hub.challenge": "1158201444",
                "hub.verify_token": world.secrets["fb_verify"],
            },
        )
        assert ok.status == 200 and await ok.text() == "1158201444"
        bad = await web.get(
            "/hooks/facebook/fb",
            params={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "x"},
        )
        assert bad.status == 403

        event = body(
            {
                "type": "message.reply",
                "timestamp": "2026-11-28T10:00:00Z",
                "data": {
                    "delivery_id": f"delivery-{hook_delivery.id}",
                    "partner_message_id": hook_delivery.message_ids[0],
                    "target": {"kind": "group", "id": "mocha-345101"},
                    "reply": {
                        "id": "r1",
                        "text": "Đã nhận",
                        "user": {"id": "u1", "display_name": "A"},
                        "created_at": "2026-11-28T10:00:00+00:00",
                    },
                },
            }
        )
        signed = signing.headers(world.secrets["hook"], "evt_1", event)
        assert (await web.post("/hooks/webhook/hook", data=event, headers=signed)).status == 200
        assert (
            await web.post("/hooks/webhook/hook", data=event, headers=signed)
        ).status == 200  # replay: once
        stale = signing.headers(world.secrets["hook"], "evt_2", event, now=time.time() - 600)
        assert (await web.post("/hooks/webhook/hook", data=event, headers=stale)).status == 401
    finally:
        await web.close()
    assert await _count(app, InboundEvent) == 3
    stats = await process_pending(app, hook_codecs())
    assert stats.done == 3 and stats.failed == 0
    async with app.sessions() as s:
        rows = (await s.execute(select(Interaction).order_by(col(Interaction.id)))).scalars().all()
    got = sorted((i.platform, i.kind, i.delivery_id, i.value) for i in rows)
    assert got == sorted(
        [
            ("zalo", "reply", zalo_delivery.id, None),
            ("facebook", "reply", fb_delivery.id, None),
            ("facebook", "reaction", fb_delivery.id, "love"),
            ("webhook", "reply", hook_delivery.id, None),
        ]
    )


async def _tg(app: App, world: object, update: dict[str, object]) -> None:
    web = await client(app)
    try:
        headers = {"X-Telegram-Bot-Api-Secret-Token": world.secrets["tg"]}  # type: ignore[attr-defined]
        assert (await web.post("/hooks/telegram/tg", data=body(update), headers=headers)).status == 200
    finally:
        await web.close()
    await process_pending(app, hook_codecs())


async def test_membership_events_change_groups(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await build(app, monkeypatch)
    bot = {"id": 7000000001, "is_bot": True, "first_name": "Tin tỉnh"}
    chat = {"id": -1000000345101, "type": "supergroup", "title": "CNS_Bản Mù Cả_Xã Mù Cả"}
    async with app.transaction() as s:  # a second post still to go to that group
        d = world.deliveries["-1000000345101"]
        await s.execute(
            Delivery.__table__.update().where(Delivery.__table__.c.id == d.id).values(state="queued")
        )
    await _tg(
        app,
        world,
        {
            "update_id": 10,
            "my_chat_member": {
                "chat": chat,
                "from": {"id": 1},
                "date": 1,
                "old_chat_member": {"status": "member", "user": bot},
                "new_chat_member": {"status": "kicked", "user": bot},
            },
        },
    )
    async with app.sessions() as s:
        group = (
            await s.execute(select(ChatGroup).where(col(ChatGroup.external_id) == "-1000000345101"))
        ).scalar_one()
        delivery = await s.get(Delivery, world.deliveries["-1000000345101"].id)
        kinds = [a.kind for a in (await s.execute(select(Alert))).scalars()]
    assert group.status == "unreachable" and delivery is not None and delivery.state == "skipped"
    assert "group_unreachable" in kinds

    new_chat = {"id": -1009999999, "type": "supergroup", "title": "CNS_Bản Tó Khò_Xã Mù Cả"}
    await _tg(
        app,
        world,
        {
            "update_id": 11,
            "my_chat_member": {
                "chat": new_chat,
                "from": {"id": 1},
                "date": 1,
                "old_chat_member": {"status": "left", "user": bot},
                "new_chat_member": {"status": "member", "user": bot},
            },
        },
    )
    async with app.sessions() as s:
        suggestion = (await s.execute(select(GroupSuggestion))).scalar_one()
    assert (suggestion.external_id, suggestion.match) == (
        "-1009999999",
        "exact",
    ) and suggestion.unit_id is not None

    await _tg(
        app,
        world,
        {
            "update_id": 12,
            "message": {
                "message_id": 1,
                "date": 1,
                "chat": {"id": -1001200000012, "type": "group"},
                "migrate_to_chat_id": -1001200000099,
            },
        },
    )
    async with app.sessions() as s:
        moved = (
            await s.execute(
                select(ChatGroup).where(
                    col(ChatGroup.title) == "CNS_tỉnh Lai Châu", col(ChatGroup.platform) == "telegram"
                )
            )
        ).scalar_one()
    assert moved.external_id == "-1001200000099"

    # A reply in a group we do not know is kept, visible to admins, not lost.
    await _tg(
        app,
        world,
        {
            "update_id": 13,
            "message": {
                "message_id": 5,
                "date": 1,
                "chat": {"id": -42, "type": "group"},
                "from": {"id": 9, "is_bot": False},
                "text": "?",
                "reply_to_message": {"message_id": 1},
            },
        },
    )
    assert await _count(app, InboundEvent, col(InboundEvent.status) == "unmatched") == 1


async def test_reactions_count_net_and_channel_totals(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await build(app, monkeypatch)
    d = world.deliveries["-1000000003451"]
    chat = {"id": -1000000003451, "type": "supergroup"}
    mid = int(d.message_ids[0])
    user = {"id": 555, "is_bot": False}
    await _tg(
        app,
        world,
        {
            "update_id": 20,
            "message_reaction": {
                "chat": chat,
                "message_id": mid,
                "user": user,
                "date": 1,
                "old_reaction": [],
                "new_reaction": [{"type": "emoji", "emoji": "👍"}],
            },
        },
    )
    await _tg(
        app,
        world,
        {
            "update_id": 21,
            "message_reaction": {
                "chat": chat,
                "message_id": mid,
                "user": user,
                "date": 2,
                "old_reaction": [{"type": "emoji", "emoji": "👍"}],
                "new_reaction": [],
            },
        },
    )
    for n, total in ((22, 5), (23, 7), (24, 7)):
        await _tg(
            app,
            world,
            {
                "update_id": n,
                "message_reaction_count": {
                    "chat": chat,
                    "message_id": mid,
                    "date": 3,
                    "reactions": [{"type": {"type": "emoji", "emoji": "👍"}, "total_count": total}],
                },
            },
        )
    async with app.sessions() as s:
        net = (
            await s.execute(
                select(func.sum(col(Interaction.count))).where(col(Interaction.kind) == "reaction")
            )
        ).scalar_one()
    assert net == 7  # +1 -1 from one person, then the anonymous total 5 -> 7 (7 again adds nothing)


async def test_a_bad_stored_event_fails_alone_in_its_chunk(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events are processed in chunks of one transaction; one that cannot be read rolls its chunk back,
    and the chunk is done again event by event: the others are processed, it alone is failed."""
    world = await build(app, monkeypatch)
    delivery = world.deliveries["-1000000003451"]
    async with app.sessions() as s:
        account_id = (
            await s.execute(select(col(ChatGroup.account_id)).where(col(ChatGroup.id) == delivery.group_id))
        ).scalar_one()
    rows = [
        InboundEvent(
            account_id=account_id,
            platform="telegram",
            key=f"k{n}",
            body=tg_reply(100 + n, "-1000000003451", delivery.message_ids[0], user=600 + n),
        )
        for n in range(5)
    ]
    rows.insert(2, InboundEvent(account_id=account_id, platform="telegram", key="bad", body=b"{not json"))
    async with app.transaction() as s:
        s.add_all(rows)
    stats = await process_pending(app, hook_codecs(), chunk=4)
    assert (stats.done, stats.failed) == (5, 1)
    async with app.sessions() as s:
        statuses = dict((await s.execute(select(col(InboundEvent.key), col(InboundEvent.status)))).all())
        replies = await _count(app, Interaction, col(Interaction.delivery_id) == delivery.id)
    assert statuses == {**{f"k{n}": "done" for n in range(5)}, "bad": "failed"}
    assert replies == 5  # each reply once, though its chunk was rolled back and done again


async def test_json_that_is_not_unicode_is_refused_and_long_keys_are_stored_hashed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body with an encoded lone surrogate (raw CESU bytes or a ``\\ud800`` escape) is valid JSON
    syntax but no text: 400, nothing stored. A 250-digit update_id is a valid update: its key is hashed
    to fit the column, and an event arriving with it is stored too (a bad row never fails the batch)."""
    world = await build(app, monkeypatch)
    web = await client(app)
    try:
        headers = {"X-Telegram-Bot-Api-Secret-Token": world.secrets["tg"], "Content-Type": "application/json"}
        escaped = b'{"update_id": 7, "message": {"chat": {"id": -1}, "text": "\\ud800"}}'
        encoded = b'{"update_id": 8, "message": {"chat": {"id": -1}, "text": "\xed\xa0\x80"}}'
        for bad in (escaped, encoded):
            response = await web.post("/hooks/telegram/tg", data=bad, headers=headers)
            assert response.status == 400, await response.text()
        paired = body({"update_id": 9, "message": {"chat": {"id": -1}, "text": "😀 \U0001f600"}})
        assert (await web.post("/hooks/telegram/tg", data=paired, headers=headers)).status == 200
        huge = int("9" * 250)
        responses = await asyncio.gather(
            web.post("/hooks/telegram/tg", data=tg_reply(huge, "-1", "1"), headers=headers),
            web.post("/hooks/telegram/tg", data=tg_reply(10, "-1", "1"), headers=headers),
        )
        assert [r.status for r in responses] == [200, 200]
        again = await web.post("/hooks/telegram/tg", data=tg_reply(huge, "-1", "1"), headers=headers)
        assert again.status == 200
    finally:
        await web.close()
    async with app.sessions() as s:
        keys = sorted((await s.execute(select(InboundEvent.key))).scalars())  # type: ignore[call-overload]
    assert len(keys) == 3 and {"u9", "u10"} < set(keys)
    (hashed,) = [k for k in keys if k.startswith("sha256:")]
    assert len(hashed) <= 200
