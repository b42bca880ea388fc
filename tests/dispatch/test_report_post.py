"""The monthly summary to the steering groups, against the sandbox Telegram server: communes and the
province get their own subtree's figures once; villages and public Pages never; refusals alert."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from adapters.sandbox import telegram as tg_box
from adapters.sandbox.run import SandboxConfig, Sandboxes
from broadcaster.bootstrap import make_dispatcher
from broadcaster.directory import accounts, groups
from broadcaster.domain.errors import PermissionDenied
from broadcaster.domain.models import Alert, ReportPost
from broadcaster.domain.results import to_data
from broadcaster.reports.monthly import LOCAL
from broadcaster.reports.post import due_month, post_monthly, steering_posts
from broadcaster.storage.app import App
from tests.helpers import TODAY, actor, add_users, cns_argv, seed_lai_chau

PROVINCE, COMMUNE, VILLAGE, PAGE = "-1001200000012", "-1000000003451", "-1000000345101", "104857600000012"
MONTH = f"{datetime.now(LOCAL):%Y-%m}"  # the groups are registered now, in this month


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    running = await Sandboxes(SandboxConfig(only=("telegram",), limits=False)).start()
    yield running
    await running.stop()


def _texts(boxes: Sandboxes, chat: str) -> list[str]:
    state = boxes.running["telegram"].app[tg_box.STATE]
    return [m["text"] for m in state.messages if str(m["chat"]["id"]) == chat]


async def _world(app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TG", boxes.credentials["telegram"]["token"])
    await seed_lai_chau(app)
    await add_users(app, [("xa", "admin", "03451"), ("xem", "viewer", None)])
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        await accounts.add_account(
            s, admin, "tg", "telegram", secret_ref="env:T_TG", settings={"base_url": boxes.urls["telegram"]}
        )
        # A Page is public: were it posted to, this address would fail the test.
        await accounts.add_account(
            s, admin, "fb", "facebook", secret_ref="env:T_TG", settings={"base_url": "http://127.0.0.1:9"}
        )
        for unit, account, external, title in (
            ("12", "tg", PROVINCE, "CNS_tỉnh Lai Châu"),
            ("12", "fb", PAGE, "CNS_tỉnh Lai Châu"),
            ("03451", "tg", COMMUNE, "CNS_Xã Mù Cả"),
            ("03451-01", "tg", VILLAGE, "CNS_Bản Mù Cả_Xã Mù Cả"),
        ):
            await groups.add_group(
                s,
                admin,
                unit_code=unit,
                account_name=account,
                external_id=external,
                title=title,
                today=TODAY,
            )


async def _post(app: App, month: str = MONTH, **kwargs: Any) -> Any:
    dispatcher = make_dispatcher(app)
    try:
        return to_data(await post_monthly(app, dispatcher, month, **kwargs))
    finally:
        await dispatcher.close()


async def test_summary_goes_to_each_steering_group_once(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _world(app, boxes, monkeypatch)
    async with app.sessions() as s:
        preview = await steering_posts(s, MONTH)
    assert sorted(g.external_id for g, _, _ in preview) == sorted([PROVINCE, COMMUNE])
    assert await _post(app) == {"groups": 2, "sent": 2, "failed": 0, "refused": 0, "already": 0}
    (commune,) = _texts(boxes, COMMUNE)
    (province,) = _texts(boxes, PROVINCE)
    year, number = MONTH.split("-")
    assert commune.startswith(f"BÁO CÁO CNS THÁNG {int(number)}/{year}: Xã Mù Cả")
    # The commune's subtree: itself and its villages, one of which has a group; members never counted.
    assert "• Nhóm: 2 (2 hoạt động, 0 mất liên lạc)" in commune and "Thành viên: chưa rõ" in commune
    assert province.startswith(f"BÁO CÁO CNS THÁNG {int(number)}/{year}: Tỉnh Lai Châu")
    assert "• Nhóm: 4 (4 hoạt động" in province
    assert _texts(boxes, VILLAGE) == []

    assert await _post(app) == {"groups": 2, "sent": 0, "failed": 0, "refused": 0, "already": 2}
    assert len(_texts(boxes, COMMUNE)) == 1


async def test_a_refused_group_is_alerted_and_the_others_still_get_it(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _world(app, boxes, monkeypatch)
    state = boxes.running["telegram"].app[tg_box.STATE]
    state.chats[int(PROVINCE)] = tg_box.Chat(int(PROVINCE), bot_status="kicked")
    assert await _post(app) == {"groups": 2, "sent": 1, "failed": 0, "refused": 1, "already": 0}
    assert len(_texts(boxes, COMMUNE)) == 1
    async with app.sessions() as s:
        alerts = (await s.execute(select(Alert).where(col(Alert.kind) == "report_post_refused"))).scalars()
        states = sorted((await s.execute(select(col(ReportPost.state)))).scalars())
    assert [a.message.split(":")[0] for a in alerts] == [
        f"monthly summary {MONTH} to 'CNS_tỉnh Lai Châu' refused"
    ]
    assert states == ["refused", "sent"]
    # Refused is not retried by the loop: a person fixes the group first.
    assert (await _post(app))["already"] == 2


async def test_scope_and_permission(app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch) -> None:
    await _world(app, boxes, monkeypatch)
    async with app.sessions() as s:
        mine = await steering_posts(s, MONTH, actor=await actor(app, "xa"))
        assert [g.external_id for g, _, _ in mine] == [COMMUNE]
        with pytest.raises(PermissionDenied):
            await steering_posts(s, MONTH, actor=await actor(app, "xem"))
        with pytest.raises(PermissionDenied):
            await steering_posts(s, MONTH, unit_code="12", actor=await actor(app, "xa"))


def test_the_summary_is_due_on_the_first_from_the_hour() -> None:
    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 12, day, hour, minute, tzinfo=LOCAL)

    assert due_month(at(1, 8, 30), 8) == "2026-11"
    assert due_month(at(1, 7, 59), 8) is None
    assert due_month(at(2, 9), 8) is None
    assert due_month(at(1, 9), None) is None  # off unless CNS_REPORT_POST_HOUR is set
    assert due_month(datetime(2027, 1, 1, 0, 5, tzinfo=LOCAL), 0) == "2026-12"


async def test_cns_report_post_dry_run_shows_the_messages(
    app: App, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _world(app, boxes, monkeypatch)
    process = await asyncio.create_subprocess_exec(
        *cns_argv(app.settings.database_url, "--as", "xa", "--json", "report", "post", "--month", MONTH),
        "--dry-run",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    (only,) = json.loads(out)
    assert (only["group"], only["platform"]) == ("CNS_Xã Mù Cả", "telegram")
    assert only["text"].startswith("BÁO CÁO CNS THÁNG")
    assert _texts(boxes, COMMUNE) == []  # nothing sent
