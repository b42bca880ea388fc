"""A small world for the inbound tests: Lai Châu, accounts with inbound secrets, groups on every
platform, one approved post planned to them and marked sent with known message ids."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlmodel import col

from broadcaster.bootstrap import make_web_app
from broadcaster.directory import accounts, groups
from broadcaster.dispatch import planning
from broadcaster.domain.models import ChatGroup, Delivery
from broadcaster.domain.sqltypes import utcnow
from broadcaster.editorial import workflow
from broadcaster.storage.app import App
from tests.helpers import TODAY, actor, add_users, seed_lai_chau

ZALO_APP = "4321"
PAGE = "104857600000012"
GROUPS = [
    # unit, account, external id, title, mode, admins
    ("12", "tg", "-1001200000012", "CNS_tỉnh Lai Châu", "direct", ""),
    ("03451", "tg", "-1000000003451", "CNS_Xã Mù Cả", "direct", ""),
    ("03451-01", "tg", "-1000000345101", "CNS_Bản Mù Cả_Xã Mù Cả", "direct", ""),
    ("03451-02", "zalo", "gmf-345102", "CNS_Bản Tó Khò_Xã Mù Cả", "direct", ""),
    ("03451-03", "zalo", "relay-345103", "CNS_Bản Xi Nế_Xã Mù Cả", "relay", "Trưởng bản=zalo:84900000001"),
    ("12", "fb", PAGE, "CNS_tỉnh Lai Châu", "direct", ""),
    ("03451-01", "hook", "mocha-345101", "CNS_Bản Mù Cả_Xã Mù Cả", "direct", ""),
]


@dataclass(slots=True)
class World:
    app: App
    secrets: dict[str, str]
    deliveries: dict[str, Delivery]  # by group external id
    dispatch_id: int


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def build(app: App, monkeypatch: pytest.MonkeyPatch) -> World:
    values = {
        "tg": "tg-secret_" + secrets.token_hex(8),
        "zalo": "oa-secret-" + secrets.token_hex(8),
        "fb": secrets.token_hex(16),
        "fb_verify": "verify-" + secrets.token_hex(4),
        "hook": whsec(),
    }
    for name, value in values.items():
        monkeypatch.setenv(f"T_HOOK_{name.upper()}", value)
    monkeypatch.setenv("T_MAIN", "unused-in-these-tests")
    monkeypatch.setenv("T_MAIN_HOOK", whsec())  # a webhook account's key must be one (checked when added)
    await seed_lai_chau(app)
    await add_users(app, [("ed", "editor", None), ("ap", "approver", None), ("xa", "viewer", "03451")])
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        for name, platform, extra, settings in (
            ("tg", "telegram", {"hook": "env:T_HOOK_TG"}, {}),
            ("zalo", "zalo", {"hook": "env:T_HOOK_ZALO"}, {"app_id": ZALO_APP}),
            ("fb", "facebook", {"hook": "env:T_HOOK_FB", "verify_token": "env:T_HOOK_FB_VERIFY"}, {}),
            ("hook", "webhook", {"hook": "env:T_HOOK_HOOK"}, {"base_url": "http://127.0.0.1:9"}),
        ):
            main = "env:T_MAIN_HOOK" if platform == "webhook" else "env:T_MAIN"
            await accounts.add_account(
                s, admin, name, platform, secret_ref=main, extra_secrets=extra, settings=settings
            )
        for unit, account, external, title, mode, admins in GROUPS:
            await groups.add_group(
                s,
                admin,
                unit_code=unit,
                account_name=account,
                external_id=external,
                title=title,
                mode=mode,
                admins=admins,
                today=TODAY,
            )
    editor, approver = await actor(app, "ed"), await actor(app, "ap")
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s,
            editor,
            title="Dịch vụ công trực tuyến",
            body="Xem https://dichvucong.gov.vn và [hướng dẫn](https://vneid.gov.vn/hd).",
            category="chính quyền số",
            max_bytes=1_000_000,
        )
        assert item.id is not None
        await workflow.submit(s, editor, item.id)
    async with app.transaction() as s:
        await workflow.approve(s, approver, item.id)
    async with app.transaction() as s:
        plan = await planning.plan(s, editor, item.id, ["12"])
    # As the dispatcher would leave them: sent, with the platform's message ids.
    async with app.transaction() as s:
        rows = (
            await s.execute(
                select(Delivery, ChatGroup).join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
            )
        ).all()
        deliveries = {}
        for n, (delivery, group) in enumerate(rows, start=1):
            ids = {
                "telegram": [str(4700 + n), str(4800 + n)],  # a post in two parts
                "facebook": [f"{PAGE}_90000{n}"],
            }.get(group.platform, [f"{group.platform}-m{n}"])
            await s.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery.id)
                .values(
                    state="awaiting_confirmation" if group.mode == "relay" else "sent",
                    message_ids=ids,
                    external_message_id=ids[0],
                    sent_at=utcnow(),
                )
            )
            delivery.message_ids = ids
            deliveries[group.external_id] = delivery
    return World(app, values, deliveries, plan.dispatch_id)


async def client(app: App, *, process: bool = False) -> TestClient[Any, Any]:
    web_client: TestClient[Any, Any] = TestClient(TestServer(make_web_app(app, process=process)))
    await web_client.start_server()
    return web_client


def body(data: dict[str, Any], *, ascii_only: bool = False) -> bytes:
    return json.dumps(data, ensure_ascii=ascii_only).encode()
