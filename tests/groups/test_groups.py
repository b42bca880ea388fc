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


async def _stored(app: App, external_id: str) -> ChatGroup:
    async with app.sessions() as s:
        return (await s.execute(select(ChatGroup).where(ChatGroup.external_id == external_id))).scalar_one()


async def test_scoped_admin_cannot_take_over_another_communes_group(app: App, tmp_path: Path) -> None:
    """A re-import (or `groups add`) naming another commune's group by its (account, external_id) is
    refused, whatever unit the row gives it: the group's current unit must be in scope too."""
    await _world(app)
    await add_users(app, [("muca", "admin", "03451")])
    admin, muca = await actor(app, "admin"), await actor(app, "muca")
    theirs = write(tmp_path / "theirs.csv", HEADER + "03388,zalo,dk-1,CNS_Phường Đoàn Kết,,,,\n")
    async with app.transaction() as s:
        await groups.import_groups(s, admin, theirs, TODAY)
    hostile = write(
        tmp_path / "hostile.csv",
        HEADER + "03451,zalo,own-1,CNS_Xã Mù Cả,,,,\n03451,zalo,dk-1,CNS_Xã Mù Cả,,,,archived\n",
    )
    with pytest.raises(
        PermissionDenied, match=r"hostile.csv:3: .*zalo/dk-1.*03388.*outside user muca"
    ) as info:
        async with app.transaction() as s:
            await groups.import_groups(s, muca, hostile, TODAY)
    assert "\n" not in str(info.value)
    with pytest.raises(PermissionDenied, match=r"zalo/dk-1.*03388.*outside user muca's scope 03451"):
        async with app.transaction() as s:
            await groups.add_group(
                s,
                muca,
                unit_code="03451",
                account_name="zalo",
                external_id="dk-1",
                title="CNS_Xã Mù Cả",
                today=TODAY,
            )
    group = await _stored(app, "dk-1")
    assert (group.title, group.status) == ("CNS_Phường Đoàn Kết", "active")
    assert await _groups(app) == 1  # nothing of the refused file was written
    # Their own groups they may still re-import and move inside their subtree.
    own = write(tmp_path / "own.csv", HEADER + "03451,zalo,own-1,CNS_Xã Mù Cả,,,,\n")
    async with app.transaction() as s:
        await groups.import_groups(s, muca, own, TODAY)
    moved = write(tmp_path / "moved.csv", HEADER + "03451-01,zalo,own-1,CNS_Bản Mù Cả_Xã Mù Cả,,,,\n")
    async with app.transaction() as s:
        assert (await groups.import_groups(s, muca, moved, TODAY)).updated == 1


async def test_reimport_keeps_what_the_file_leaves_out(app: App, tmp_path: Path) -> None:
    """A column left out of the file keeps the stored value; a column present, even empty, sets it."""
    await _world(app)
    admin = await actor(app, "admin")
    full = write(
        tmp_path / "full.csv",
        HEADER + '03451-01,zalo,relay-1,CNS_Bản Mù Cả_Xã Mù Cả,,relay,"Lò Văn Pọm=zalo:849",unreachable\n',
    )
    minimal = write(
        tmp_path / "minimal.csv",
        "unit_code,account,external_id,title\n"
        "03451-01,zalo,relay-1,CNS_Bản Mù Cả_Xã Mù Cả (mới)\n"
        "03451,zalo,new-1,CNS_Xã Mù Cả\n",
    )
    async with app.transaction() as s:
        await groups.import_groups(s, admin, full, TODAY)
    async with app.transaction() as s:
        assert await groups.import_groups(s, admin, minimal, TODAY) == groups.GroupImport(2, 1, 1)
    relay = await _stored(app, "relay-1")
    assert (relay.title, relay.mode, relay.status) == ("CNS_Bản Mù Cả_Xã Mù Cả (mới)", "relay", "unreachable")
    assert relay.admins == [{"name": "Lò Văn Pọm", "channel": "zalo", "address": "849"}]
    fresh = await _stored(app, "new-1")  # a new group gets the defaults
    assert (fresh.mode, fresh.admins, fresh.status) == ("direct", [], "active")
    # A present column changes the value; an empty cell there means the default.
    status_only = write(
        tmp_path / "status.csv",
        "unit_code,account,external_id,title,status\n03451-01,zalo,relay-1,CNS_Bản Mù Cả_Xã Mù Cả,\n",
    )
    async with app.transaction() as s:
        await groups.import_groups(s, admin, status_only, TODAY)
    relay = await _stored(app, "relay-1")
    assert (relay.mode, relay.status, len(relay.admins)) == ("relay", "active", 1)
    # Emptying the admins of a relay group (mode left out, so still relay) is refused with the line.
    no_admins = write(
        tmp_path / "no_admins.csv",
        "unit_code,account,external_id,title,admins\n03451-01,zalo,relay-1,CNS_Bản Mù Cả_Xã Mù Cả,\n",
    )
    with pytest.raises(CsvError, match=r"no_admins\.csv:2: a relay group needs at least one admin"):
        async with app.transaction() as s:
            await groups.import_groups(s, admin, no_admins, TODAY)
    direct = write(
        tmp_path / "direct.csv",
        "unit_code,account,external_id,title,mode,admins\n03451-01,zalo,relay-1,CNS_Bản Mù Cả_Xã Mù Cả,,\n",
    )
    async with app.transaction() as s:
        await groups.import_groups(s, admin, direct, TODAY)
    relay = await _stored(app, "relay-1")
    assert (relay.mode, relay.admins) == ("direct", [])
