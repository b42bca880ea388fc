"""From an approved, planned dispatch to the sandbox platforms: accounts -> adapters (bootstrap),
groups -> targets with their unit's variables, revision -> rendered message, send. This is the path the
dispatcher will drive; here each delivery is sent once, in order."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.relay import RelaySender
from adapters.sandbox import facebook as fb_box
from adapters.sandbox import telegram as tg_box
from adapters.sandbox import webhook_gateway as wh_box
from adapters.sandbox import zalo as zalo_box
from adapters.sandbox.run import DEMO_PAGE, SandboxConfig, Sandboxes
from broadcaster.bootstrap import build_sender
from broadcaster.directory import accounts, groups
from broadcaster.dispatch import planning
from broadcaster.dispatch.targets import media_from, target_for
from broadcaster.domain.models import Account, Attachment, ChatGroup, ContentRevision, Delivery, Dispatch
from broadcaster.domain.ports import OAuthTokens, Sender
from broadcaster.editorial import workflow
from broadcaster.storage.app import App
from broadcaster.storage.token_store import FileTokenStore
from broadcaster.units.tree import load_tree
from content.render import render_revision
from tests.helpers import TODAY, actor, add_users, seed_lai_chau, write


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    running = await Sandboxes(SandboxConfig()).start()
    yield running
    await running.stop()


async def test_planned_dispatch_reaches_every_platform(
    app: App, boxes: Sandboxes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds, urls = boxes.credentials, boxes.urls
    monkeypatch.setenv("T_TG", creds["telegram"]["token"])
    monkeypatch.setenv("T_ZALO", creds["zalo"]["app_secret"])
    monkeypatch.setenv("T_FB", creds["facebook"]["page_token"])
    monkeypatch.setenv("T_HOOK", creds["webhook"]["secret"])
    settings = app.settings.__class__(database_url=app.settings.database_url, token_dir=tmp_path)
    await FileTokenStore(tmp_path / "zalo-zalo.json").save(
        OAuthTokens(creds["zalo"]["access_token"], creds["zalo"]["refresh_token"], time.time() + 90_000)
    )
    zalo_state = boxes.running["zalo"].app[zalo_box.STATE]
    zalo_state.followers.add("84900000001")

    await seed_lai_chau(app)
    await add_users(app, [("ed", "editor", None), ("ap", "approver", None)])
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        for name, platform, ref, cfg in (
            ("tg", "telegram", "env:T_TG", {"base_url": urls["telegram"]}),
            (
                "zalo",
                "zalo",
                "env:T_ZALO",
                {"base_url": urls["zalo"], "oauth_url": urls["zalo"], "app_id": creds["zalo"]["app_id"]},
            ),
            ("fb", "facebook", "env:T_FB", {"base_url": urls["facebook"], "version": "v23.0"}),
            ("hook", "webhook", "env:T_HOOK", {"base_url": urls["webhook"]}),
        ):
            await accounts.add_account(s, admin, name, platform, secret_ref=ref, settings=cfg)
        csv = write(
            tmp_path / "g.csv",
            "unit_code,account,external_id,title,mode,admins\n"
            f"12,fb,{DEMO_PAGE},CNS_tỉnh Lai Châu,,\n"
            "03451,tg,-1001000000451,CNS_Xã Mù Cả,,\n"
            "03451,zalo,gmf-03451,CNS_Xã Mù Cả,,\n"
            "03451-01,hook,mocha-1,CNS_Bản Mù Cả_Xã Mù Cả,,\n"
            "03451-02,zalo,relay-2,CNS_Bản Tó Khò_Xã Mù Cả,relay,Lò Văn Pọm=zalo:84900000001\n",
        )
        await groups.import_groups(s, admin, csv, TODAY)
    ed, ap = await actor(app, "ed"), await actor(app, "ap")
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s,
            ed,
            title="Thanh toán số",
            body="Bà con {unit_name} ({commune}) ơi!",
            category="kinh tế số",
            max_bytes=1,
        )
        await workflow.submit(s, ed, item.id or 0)
    async with app.transaction() as s:
        await workflow.approve(s, ap, item.id or 0)
        plan = await planning.plan(s, ed, item.id or 0, ["12"])
    assert plan.total == 5

    async with app.transaction() as s:
        rows = (
            await s.execute(
                select(Delivery, ChatGroup, Account)
                .join(ChatGroup, ChatGroup.id == Delivery.group_id)  # type: ignore[arg-type]
                .join(Account, Account.id == ChatGroup.account_id)  # type: ignore[arg-type]
                .where(Delivery.dispatch_id == plan.dispatch_id)  # type: ignore[arg-type]
            )
        ).all()
        dispatch = await s.get(Dispatch, plan.dispatch_id)
        assert dispatch is not None
        revision = await s.get(ContentRevision, dispatch.revision_id)
        attachments = (await s.execute(select(Attachment))).scalars().all()
        tree = await load_tree(s, TODAY)
    assert revision is not None
    used = {a.name: a for _, _, a in rows}
    senders: dict[str, Sender] = {name: build_sender(a, settings) for name, a in used.items()}
    by_platform = {a.platform: senders[name] for name, a in used.items()}
    relay = RelaySender(by_platform, lambda key: f"https://cns.example/r/{key}")
    try:
        for delivery, group, account in rows:
            target = target_for(group, tree)
            sender = relay if group.mode == "relay" else senders[account.name]
            message = render_revision(group.platform, revision, media_from(attachments), target.variables)
            result = await sender.send(target, message, f"delivery-{delivery.id}")
            assert result.message_ids
    finally:
        for sender in senders.values():
            await sender.close()

    tg = boxes.running["telegram"].app[tg_box.STATE].messages
    assert tg[0]["text"] == "<b>Thanh toán số</b>\n\nBà con Xã Mù Cả (Xã Mù Cả) ơi!"
    zalo_messages = zalo_state.messages
    assert {m.get("group_id") or m.get("user_id") for m in zalo_messages} == {"gmf-03451", "84900000001"}
    relayed = [m["message"]["text"] for m in zalo_messages if m.get("user_id")]
    assert "Bà con Bản Tó Khò (Xã Mù Cả) ơi!" in relayed[1]
    assert relayed[2].startswith("Đăng xong, bấm để xác nhận: https://cns.example/r/delivery-")
    posts = boxes.running["facebook"].app[fb_box.STATE].posts
    # the province has no commune: an empty value, decided by the tree on the send date
    assert [p["message"] for p in posts.values()] == ["Thanh toán số\n\nBà con Tỉnh Lai Châu () ơi!"]
    hooks = boxes.running["webhook"].app[wh_box.STATE].messages
    assert next(iter(hooks.values()))["data"]["text"] == "Thanh toán số\n\nBà con Bản Mù Cả (Xã Mù Cả) ơi!"
