"""Upkeep against the sandbox Telegram server: member counts polled through the dispatcher's limits,
relay posts reminded once and then escalated to the commune's groups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from adapters.sandbox import telegram as tg_box
from adapters.sandbox.run import SandboxConfig, Sandboxes
from broadcaster.bootstrap import make_dispatcher
from broadcaster.directory import accounts, groups
from broadcaster.dispatch import planning
from broadcaster.domain.models import Alert, ChatGroup, Delivery, MemberSnapshot
from broadcaster.domain.sqltypes import utcnow
from broadcaster.editorial import workflow
from broadcaster.runtime.upkeep import follow_up_relays, poll_members
from broadcaster.storage.app import App
from tests.helpers import TODAY, actor, add_users, seed_lai_chau

COMMUNE_GROUP, VILLAGE_GROUP, RELAY_GROUP = "-1000000003451", "-1000000345101", "relay-345102"
LEADER = "700001"  # the relay group's admin, reached one to one by the bot


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    running = await Sandboxes(SandboxConfig(only=("telegram",), limits=False)).start()
    yield running
    await running.stop()


def _messages(boxes: Sandboxes, chat: str) -> list[dict[str, Any]]:
    state = boxes.running["telegram"].app[tg_box.STATE]
    return [m for m in state.messages if str(m["chat"]["id"]) == chat]


async def _world(app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("T_TG", boxes.credentials["telegram"]["token"])
    # A bot may write to a person only after that person started it, as the leader has.
    state = boxes.running["telegram"].app[tg_box.STATE]
    state.chats[int(LEADER)] = tg_box.Chat(int(LEADER), "private")
    await seed_lai_chau(app)
    await add_users(app, [("ed", "editor", None), ("ap", "approver", None)])
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        await accounts.add_account(
            s, admin, "tg", "telegram", secret_ref="env:T_TG", settings={"base_url": boxes.urls["telegram"]}
        )
        for unit, external, title, mode, admins in (
            ("03451", COMMUNE_GROUP, "CNS_Xã Mù Cả", "direct", ""),
            ("03451-01", VILLAGE_GROUP, "CNS_Bản Mù Cả_Xã Mù Cả", "direct", ""),
            ("03451-02", RELAY_GROUP, "CNS_Bản Tó Khò_Xã Mù Cả", "relay", f"Lò Văn Pọm=telegram:{LEADER}"),
        ):
            await groups.add_group(
                s,
                admin,
                unit_code=unit,
                account_name="tg",
                external_id=external,
                title=title,
                mode=mode,
                admins=admins,
                today=TODAY,
            )
    editor, approver = await actor(app, "ed"), await actor(app, "ap")
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s, editor, title="Tiêm chủng", body="Bà con {unit_name} ơi!", category="y tế", max_bytes=1
        )
        await workflow.submit(s, editor, item.id or 0)
    async with app.transaction() as s:
        await workflow.approve(s, approver, item.id or 0)
        plan = await planning.plan(s, editor, item.id or 0, ["03451"])
    assert plan.total == 3
    return plan.dispatch_id


async def _send_all(app: App) -> None:
    await make_dispatcher(app).run(asyncio.Event(), until_idle=True, idle_sleep=0.01)


async def _relay_delivery(app: App) -> Delivery:
    async with app.transaction() as s:
        return (
            await s.execute(
                select(Delivery)
                .join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
                .where(col(ChatGroup.external_id) == RELAY_GROUP)
            )
        ).scalar_one()


async def _age(app: App, delivery_id: int, hours: float) -> None:
    """As if the relay package had gone out ``hours`` ago."""
    async with app.transaction() as s:
        await s.execute(
            update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(sent_at=utcnow() - timedelta(hours=hours))
        )


async def test_member_counts_are_polled_once_per_interval_and_relay_stays_unknown(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _world(app, boxes, monkeypatch)
    dispatcher = make_dispatcher(app)
    try:
        assert await poll_members(app, dispatcher) == 2  # the two direct groups; a relay group is not ours
        assert await poll_members(app, dispatcher) == 0  # counted within CNS_REACH_INTERVAL_HOURS
    finally:
        await dispatcher.close()
    chats = boxes.running["telegram"].app[tg_box.STATE].chats
    async with app.transaction() as s:
        rows = (
            await s.execute(
                select(
                    col(ChatGroup.external_id), col(MemberSnapshot.members), col(MemberSnapshot.source)
                ).join(ChatGroup, col(ChatGroup.id) == col(MemberSnapshot.group_id))
            )
        ).all()
    assert sorted(rows) == sorted(
        (external, chats[int(external)].members, "poll") for external in (COMMUNE_GROUP, VILLAGE_GROUP)
    )


async def test_a_polled_group_the_bot_lost_stays_unknown(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _world(app, boxes, monkeypatch)
    state = boxes.running["telegram"].app[tg_box.STATE]
    state.auto_chats = False  # only the commune group exists on the platform now
    state.chats[int(COMMUNE_GROUP)] = tg_box.Chat(int(COMMUNE_GROUP), members=41)
    dispatcher = make_dispatcher(app)
    try:
        assert await poll_members(app, dispatcher) == 1
    finally:
        await dispatcher.close()
    async with app.transaction() as s:
        counts = (await s.execute(select(col(MemberSnapshot.members)))).scalars().all()
    assert counts == [41]  # the village group is unknown: no snapshot, never a 0


async def test_relay_is_reminded_once_then_escalated_to_the_commune_team(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _world(app, boxes, monkeypatch)
    await _send_all(app)
    first = await _relay_delivery(app)
    assert (first.state, first.last_error) == ("awaiting_confirmation", None) and first.sent_at is not None
    asked = _messages(boxes, LEADER)  # the request, the post to copy, the confirmation link
    assert len(asked) == 3 and asked[0]["text"].startswith("Kính gửi Lò Văn Pọm")
    assert asked[1]["text"] == "Tiêm chủng\n\nBà con Bản Tó Khò ơi!"
    link = asked[2]["text"].rsplit(" ", 1)[-1]
    assert "/r/delivery-" in link

    helper = make_dispatcher(app)
    try:
        # Within the reminder time nothing happens.
        assert await follow_up_relays(app, helper) == {"reminded": 0, "escalated": 0}
        await _age(app, pk := first.id or 0, hours=app.settings.confirm_remind_hours + 1)
        assert await follow_up_relays(app, helper) == {"reminded": 1, "escalated": 0}
        reminded = await _relay_delivery(app)
        assert (reminded.state, reminded.reminders) == ("queued", 1)
        await _send_all(app)
        again = await _relay_delivery(app)
        assert again.state == "awaiting_confirmation"
        assert again.sent_at == reminded.sent_at  # the post's send time is the first one
        asked = _messages(boxes, LEADER)
        assert len(asked) == 6 and asked[3]["text"].startswith("Nhắc lại")
        assert asked[4]["text"] == asked[1]["text"]
        assert asked[5]["text"].rsplit(" ", 1)[-1] == link  # either message confirms the one delivery
        assert await follow_up_relays(app, helper) == {"reminded": 0, "escalated": 0}  # reminded once

        before = len(_messages(boxes, COMMUNE_GROUP))
        await _age(app, pk, hours=app.settings.confirm_escalate_hours + 1)
        assert await follow_up_relays(app, helper) == {"reminded": 0, "escalated": 1}
        assert await follow_up_relays(app, helper) == {"reminded": 0, "escalated": 0}  # told once
    finally:
        await helper.close()
    told = _messages(boxes, COMMUNE_GROUP)[before:]
    assert len(told) == 1 and "CNS_Bản Tó Khò_Xã Mù Cả" in told[0]["text"]
    assert not _messages(boxes, VILLAGE_GROUP)[1:]  # villages are not told about each other
    async with app.transaction() as s:
        alerts = (
            (await s.execute(select(Alert).where(col(Alert.kind) == "relay_unconfirmed"))).scalars().all()
        )
        escalated = await s.get(Delivery, pk)
    assert len(alerts) == 1 and "CNS_Bản Tó Khò_Xã Mù Cả" in alerts[0].message
    assert escalated is not None and escalated.escalated_at is not None


async def test_a_confirmed_relay_post_is_neither_reminded_nor_escalated(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _world(app, boxes, monkeypatch)
    await _send_all(app)
    delivery = await _relay_delivery(app)
    async with app.transaction() as s:
        await s.execute(
            update(Delivery)
            .where(col(Delivery.id) == delivery.id)
            .values(state="confirmed", confirmed_at=utcnow())
        )
    await _age(app, delivery.id or 0, hours=app.settings.confirm_escalate_hours + 1)
    helper = make_dispatcher(app)
    try:
        assert await follow_up_relays(app, helper) == {"reminded": 0, "escalated": 0}
    finally:
        await helper.close()
    assert len(_messages(boxes, LEADER)) == 3  # the first request only
