"""Dispatch planning: audience expansion, idempotency, refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from broadcaster.directory import groups
from broadcaster.dispatch import planning
from broadcaster.domain.errors import InputError, NotFound, PermissionDenied, WorkflowError
from broadcaster.domain.models import ChatGroup, Delivery
from broadcaster.domain.results import to_data
from broadcaster.domain.sqltypes import utcnow
from broadcaster.editorial import workflow
from broadcaster.storage.app import App
from tests.helpers import TODAY, actor, add_accounts, add_users, seed_lai_chau, write

GROUPS = """unit_code,account,external_id,title,mode,admins
12,zalo,p-z,CNS_tỉnh Lai Châu,,
12,tg,p-t,CNS_tỉnh Lai Châu,,
03451,zalo,c-z,CNS_Xã Mù Cả,,
03451,fb,c-f,CNS_Xã Mù Cả,,
03388,zalo,d-z,CNS_Phường Đoàn Kết,,
03451-01,zalo,v1-z,CNS_Bản Mù Cả_Xã Mù Cả,relay,A=zalo:1
03451-01,hook,v1-h,CNS_Bản Mù Cả_Xã Mù Cả,,
03451-02,tg,v2-t,CNS_Bản Tó Khò_Xã Mù Cả,,
03451-03,zalo,v3-z,CNS_Bản Xi Nế_Xã Mù Cả,,
"""


async def _world(app: App, tmp_path: Path) -> int:
    await seed_lai_chau(app)
    await add_accounts(app)
    await add_users(
        app,
        [
            ("ed", "editor", None),
            ("ap", "approver", None),
            ("muca.ed", "editor", "03451"),
            ("muca.ap", "approver", "03451"),
        ],
    )
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        await groups.import_groups(s, admin, write(tmp_path / "g.csv", GROUPS), TODAY)
    return await _approved(app, "ed", "ap")


async def _approved(app: App, author: str, approver: str) -> int:
    writer, checker = await actor(app, author), await actor(app, approver)
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s, writer, title="T", body="Chào {unit_name}", category="xã hội số", max_bytes=1
        )
        await workflow.submit(s, writer, item.id or 0)
    async with app.transaction() as s:
        await workflow.approve(s, checker, item.id or 0)
    return item.id or 0


async def _plan(app: App, user: str, content_id: int, scope: list[str], **kw: object) -> planning.PlanResult:
    who = await actor(app, user)
    async with app.transaction() as s:
        return await planning.plan(s, who, content_id, scope, **kw)  # type: ignore[arg-type]


async def test_plan_whole_province_then_replan_adds_nothing(app: App, tmp_path: Path) -> None:
    cid = await _world(app, tmp_path)
    first = await _plan(app, "ed", cid, ["12"])
    assert first.created and first.added == first.total == 9
    assert first.by_level == {"commune": 3, "province": 2, "village": 4}
    assert first.by_platform == {"facebook": 1, "telegram": 2, "webhook": 1, "zalo": 5}
    assert first.by_state == {"planned": 9}
    again = await _plan(app, "ed", cid, ["12"])
    assert (again.dispatch_id, again.created, again.added, again.total) == (first.dispatch_id, False, 0, 9)
    forced = await _plan(app, "ed", cid, ["12"], again=True)
    assert forced.dispatch_id != first.dispatch_id and forced.added == 9
    async with app.transaction() as s:
        rows = (await s.execute(select(Delivery.mode, func.count()).group_by(Delivery.mode))).all()  # type: ignore[call-overload]
    assert dict(rows) == {"direct": 16, "relay": 2}


async def test_tiers_platforms_and_inactive_groups(app: App, tmp_path: Path) -> None:
    cid = await _world(app, tmp_path)
    async with app.transaction() as s:
        await s.execute(update(ChatGroup).where(ChatGroup.external_id == "v3-z").values(status="unreachable"))  # type: ignore[arg-type]
    villages = await _plan(app, "ed", cid, ["03451"], tiers=["village"])
    assert villages.by_level == {"village": 3}
    assert villages.left_out == {"unreachable": 1}  # said, not silently fewer
    zalo = await _plan(app, "ed", cid, ["12"], platforms=["zalo"], tiers=["province", "commune"])
    assert zalo.total == 3 and zalo.by_platform == {"zalo": 3} and zalo.left_out == {}
    both = await _plan(app, "ed", cid, ["03451", "03388"], tiers=["commune"])
    assert both.total == 3
    with pytest.raises(InputError, match="tier 'district' is not in the tier schema"):
        await _plan(app, "ed", cid, ["12"], tiers=["district"])
    with pytest.raises(InputError, match="unknown platform 'mocha'"):
        await _plan(app, "ed", cid, ["12"], platforms=["mocha"])
    with pytest.raises(NotFound, match="unit 107 does not exist"):
        await _plan(app, "ed", cid, ["107"])


async def test_refusals_write_nothing(app: App, tmp_path: Path) -> None:
    cid = await _world(app, tmp_path)
    ed = await actor(app, "ed")
    async with app.transaction() as s:
        draft, _ = await workflow.create(s, ed, title="D", body="x", category="y", max_bytes=1)
    with pytest.raises(WorkflowError, match="is draft, not approved"):
        await _plan(app, "ed", draft.id or 0, ["12"])
    with pytest.raises(PermissionDenied, match=r"outside user muca\.ed's scope 03451"):
        await _plan(app, "muca.ed", cid, ["12"])
    with pytest.raises(InputError, match="in the past"):
        await _plan(app, "ed", cid, ["12"], at=utcnow() - timedelta(hours=1))
    with pytest.raises(NotFound, match="unknown content 999"):
        await _plan(app, "ed", 999, ["12"])
    async with app.transaction() as s:
        assert (await s.execute(select(func.count()).select_from(Delivery))).scalar_one() == 0


async def test_approver_scope_limits_the_dispatch(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    local = await _approved(app, "muca.ed", "muca.ap")
    with pytest.raises(PermissionDenied, match=r"approved by muca\.ap, whose scope does not include unit 12"):
        await _plan(app, "ed", local, ["12"])
    inside = await _plan(app, "muca.ed", local, ["03451"])
    assert inside.total == 6


async def test_scheduled_dispatch_keeps_its_time(app: App, tmp_path: Path) -> None:
    cid = await _world(app, tmp_path)
    at = utcnow() + timedelta(days=2)
    result = await _plan(app, "ed", cid, ["03451"], at=at)
    assert result.scheduled_at == at
    assert to_data(result)["scheduled_at"].endswith("+07:00")  # type: ignore[index]
    same = await _plan(app, "ed", cid, ["03451"], at=at)
    assert same.dispatch_id == result.dispatch_id and same.added == 0


async def test_tier_waves_and_quiet_hours(app: App, tmp_path: Path) -> None:
    from datetime import datetime

    from scheduler.timing import QuietHours, parse_quiet, parse_quiet_plan, parse_waves

    cid = await _world(app, tmp_path)
    local_now = utcnow().astimezone(planning.LOCAL_TZ)
    ten_am = (local_now + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    quiet = parse_quiet("21:00-06:00")
    assert quiet is not None
    result = await _plan(
        app,
        "ed",
        cid,
        ["12"],
        at=ten_am,
        waves=parse_waves("commune=15,village=30"),
        adjust=lambda level, due: quiet.after(due),
        adjust_key="quiet 21:00-06:00",
    )
    async with app.transaction() as s:
        due = dict(
            (
                await s.execute(
                    select(Delivery.level, func.min(Delivery.next_attempt_at))  # type: ignore[call-overload]
                    .where(Delivery.dispatch_id == result.dispatch_id)
                    .group_by(Delivery.level)
                )
            ).all()
        )
    assert due["province"] == ten_am
    assert due["commune"] == ten_am + timedelta(minutes=15)
    assert due["village"] == ten_am + timedelta(minutes=30)
    late = ten_am.replace(hour=20, minute=50)  # villages would land at 21:20: they wait for 06:00
    result = await _plan(
        app,
        "ed",
        cid,
        ["12"],
        at=late,
        waves={"village": 30},
        adjust=lambda level, due: quiet.after(due),
        adjust_key="quiet 21:00-06:00",
    )
    async with app.transaction() as s:
        village = (
            await s.execute(
                select(func.min(Delivery.next_attempt_at)).where(  # type: ignore[arg-type]
                    Delivery.dispatch_id == result.dispatch_id, Delivery.level == "village"
                )
            )
        ).scalar_one()
    assert village.astimezone(planning.LOCAL_TZ) == (late + timedelta(days=1)).replace(hour=6, minute=0)
    with pytest.raises(InputError, match="wave for 'district' does not match the tier schema"):
        await _plan(app, "ed", cid, ["12"], waves={"district": 10})
    with pytest.raises(InputError, match="use TIER=MINUTES"):
        parse_waves("commune:15")
    with pytest.raises(InputError, match="HH:MM-HH:MM"):
        parse_quiet("late")
    assert parse_quiet("off") is None
    day_quiet = QuietHours(
        datetime.strptime("12:00", "%H:%M").time(), datetime.strptime("13:00", "%H:%M").time()
    )
    noon = ten_am.replace(hour=12, minute=30)
    assert day_quiet.after(noon) == noon.replace(hour=13, minute=0)
    assert day_quiet.after(ten_am) == ten_am
    plan = parse_quiet_plan("21:00-06:00,village=20:00-07:00,province=off")
    assert plan is not None
    night = ten_am.replace(hour=20, minute=30)
    assert plan.after("province", night) == night
    assert plan.after("commune", night) == night  # 20:30 is before 21:00
    assert plan.after("village", night) == (night + timedelta(days=1)).replace(hour=7, minute=0)
    assert plan.describe() == "21:00-06:00,village=20:00-07:00,province=off"
    assert parse_quiet_plan("off") is None
