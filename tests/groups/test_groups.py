"""Groups: add, CSV import (all-or-nothing, idempotent), scope, list."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from broadcaster.directory import groups
from broadcaster.domain.errors import Conflict, CsvError, InputError, NotFound, PermissionDenied
from broadcaster.domain.models import AuditEntry, ChatGroup
from broadcaster.storage.app import App
from tests.helpers import TODAY, actor, add_accounts, add_users, seed_lai_chau, write

HEADER = "unit_code,account,external_id,title,platform,mode,admins,status\n"


async def _world(app: App) -> None:
    await seed_lai_chau(app)
    await add_accounts(app)


async def _groups(app: App) -> int:
    async with app.transaction() as s:
        return (await s.execute(select(func.count()).select_from(ChatGroup))).scalar_one()


async def test_add_group_and_refusals(app: App) -> None:
    await _world(app)
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        group = await groups.add_group(
            s,
            admin,
            unit_code="03451",
            account_name="zalo",
            external_id="g1",
            title="CNS_Xã Mù Cả",
            today=TODAY,
        )
    assert group.platform == "zalo" and group.mode == "direct" and group.status == "active"
    with pytest.raises(Conflict):
        async with app.transaction() as s:
            await groups.add_group(
                s,
                admin,
                unit_code="03451",
                account_name="zalo",
                external_id="g1",
                title="CNS_Xã Mù Cả",
                today=TODAY,
            )
    with pytest.raises(NotFound, match="unit 107 does not exist on 2026-11-28"):
        async with app.transaction() as s:
            await groups.add_group(
                s,
                admin,
                unit_code="107",
                account_name="zalo",
                external_id="g2",
                title="CNS_Mường Tè",
                today=TODAY,
            )
    with pytest.raises(NotFound, match="unknown account 'nope'"):
        async with app.transaction() as s:
            await groups.add_group(
                s, admin, unit_code="03451", account_name="nope", external_id="g3", title="x", today=TODAY
            )
    with pytest.raises(InputError, match="relay group needs at least one admin"):
        async with app.transaction() as s:
            await groups.add_group(
                s,
                admin,
                unit_code="03451-01",
                account_name="zalo",
                external_id="g4",
                title="CNS_Bản Mù Cả_Xã Mù Cả",
                mode="relay",
                today=TODAY,
            )
    assert await _groups(app) == 1


async def test_commune_admin_manages_only_its_subtree(app: App) -> None:
    await _world(app)
    await add_users(app, [("muca", "admin", "03451")])
    muca = await actor(app, "muca")
    async with app.transaction() as s:
        await groups.add_group(
            s,
            muca,
            unit_code="03451-02",
            account_name="zalo",
            external_id="v2",
            title="CNS_Bản Tó Khò_Xã Mù Cả",
            mode="relay",
            admins="Lò Văn A=zalo:84900000001",
            today=TODAY,
        )
    with pytest.raises(PermissionDenied, match="outside user muca's scope 03451"):
        async with app.transaction() as s:
            await groups.add_group(
                s,
                muca,
                unit_code="03388",
                account_name="zalo",
                external_id="x",
                title="CNS_Phường Đoàn Kết",
                today=TODAY,
            )


async def test_import_is_all_or_nothing_and_idempotent(app: App, tmp_path: Path) -> None:
    await _world(app)
    admin = await actor(app, "admin")
    good = write(
        tmp_path / "g.csv",
        HEADER
        + "03451,zalo,gmf-1,CNS_Xã Mù Cả,zalo,direct,,\n"
        + '03451-01,zalo,relay-1,CNS_Bản Mù Cả_Xã Mù Cả,,relay,"Lò Văn Pọm=zalo:849; Tao Thị Hoa=phone:09",\n'
        + "12,tg,-1001,CNS_tỉnh Lai Châu,telegram,,,\n",
    )
    async with app.transaction() as s:
        assert await groups.import_groups(s, admin, good, TODAY) == groups.GroupImport(
            rows=3, added=3, updated=0
        )
    async with app.transaction() as s:
        assert await groups.import_groups(s, admin, good, TODAY) == groups.GroupImport(
            rows=3, added=0, updated=3
        )
        relay = (await s.execute(select(ChatGroup).where(ChatGroup.external_id == "relay-1"))).scalar_one()
        audits = (
            await s.execute(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "group.import")
            )
        ).scalar_one()
    assert relay.admins == [
        {"name": "Lò Văn Pọm", "channel": "zalo", "address": "849"},
        {"name": "Tao Thị Hoa", "channel": "phone", "address": "09"},
    ]
    assert audits == 2
    assert await _groups(app) == 3


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("99999,zalo,x,CNS_X,,,,", "unit 99999 does not exist"),
        ("03451,nope,x,CNS_X,,,,", "unknown account 'nope'"),
        ("03451,zalo,x,CNS_X,telegram,,,", "is a zalo account, not telegram"),
        ("03451,zalo,x,CNS_X,,broadcast,,", "unknown mode 'broadcast'"),
        ("03451,zalo,x,CNS_X,,,Lò Văn A,", "must look like 'Name=channel:address'"),
        ("03451,zalo,x,CNS_X,,,A=sms:1,", "unknown channel 'sms'"),
        ("03451,zalo,,CNS_X,,,,", "external_id must have 1 to 128 characters"),
        ("03451,zalo,gmf-1,CNS_X,,,,", "duplicate group zalo/gmf-1"),
    ],
)
async def test_bad_rows_name_their_line(app: App, tmp_path: Path, row: str, message: str) -> None:
    await _world(app)
    admin = await actor(app, "admin")
    path = write(tmp_path / "bad.csv", HEADER + "03451,zalo,gmf-1,CNS_Xã Mù Cả,,,,\n" + row + "\n")
    with pytest.raises(CsvError, match=message) as info:
        async with app.transaction() as s:
            await groups.import_groups(s, admin, path, TODAY)
    assert info.value.line == 3
    assert await _groups(app) == 0


async def test_list_by_subtree(app: App, tmp_path: Path) -> None:
    await _world(app)
    admin = await actor(app, "admin")
    path = write(
        tmp_path / "g.csv",
        HEADER
        + "03451,zalo,a,CNS_Xã Mù Cả,,,,\n03388,zalo,b,CNS_Phường Đoàn Kết,,,,\n"
        + "03451-03,hook,c,CNS_Bản Xi Nế_Xã Mù Cả,,,,\n",
    )
    async with app.transaction() as s:
        await groups.import_groups(s, admin, path, TODAY)
        inside = await groups.list_groups(s, today=TODAY, unit_code="03451")
        hooks = await groups.list_groups(s, today=TODAY, platform="webhook")
    assert sorted(g.external_id for g in inside) == ["a", "c"]
    assert [g.external_id for g in hooks] == ["c"]
