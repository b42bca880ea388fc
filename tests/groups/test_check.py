"""`groups check`: convention, likely unit, units without group, gone units, duplicates."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from broadcaster.directory import groups
from broadcaster.directory.group_check import check_groups
from broadcaster.domain.errors import CsvError
from broadcaster.storage.app import App
from broadcaster.units.tree import UnitRef
from tests.helpers import actor, add_accounts, seed_lai_chau, write

HEADER = "unit_code,account,external_id,title\n"


async def test_check_reports_every_kind_of_problem(app: App, tmp_path: Path) -> None:
    await seed_lai_chau(app)
    await add_accounts(app)
    admin = await actor(app, "admin")
    old = write(
        tmp_path / "2022.csv",
        HEADER
        + "107,zalo,d107,CNS_Huyện Mường Tè\n106,tg,d106,CNS_Tam Đường\n"
        + "03386,zalo,c03386,CNS_Phường Quyết Thắng\n",
    )
    async with app.transaction() as s:
        await groups.import_groups(s, admin, old, date(2025, 1, 1))
    rows = [
        "12,zalo,p,CNS_tỉnh Lai Châu",
        "03451,zalo,c1,cns_xa mu ca",  # no diacritics, lower case, prefix: fine
        "03451-01,zalo,v1,CNS_Mù Cả_Mù Cả",  # village without prefixes: fine
        "03451-02,zalo,v2,CNS_Bản Xi Nế_Xã Mù Cả",  # names another village of the same commune
        "03451-03,zalo,v3,Nhóm bản Xi Nế",  # does not follow the convention
        "03451-04,zalo,v4,CNS_Bản Má Ký_Xã Mù Cả",
        "03451-04,zalo,v4b,CNS_Bản Má Ký_Xã Mù Cả",  # duplicate: same unit and platform
    ]
    path = write(tmp_path / "2025.csv", HEADER + "\n".join(rows) + "\n")
    async with app.transaction() as s:
        await groups.import_groups(s, admin, path, date(2025, 7, 1))
        report = await check_groups(s, date(2025, 7, 1))
        before = await check_groups(s, date(2025, 6, 30))

    assert report.ok == 5
    mismatched = {m.external_id: m for m in report.mismatched}
    assert set(mismatched) == {"v2", "v3"}
    likely = mismatched["v2"].likely_unit
    assert likely is not None and likely.code == "03451-03"
    assert mismatched["v2"].expected_title == "CNS_Bản Tó Khò_Xã Mù Cả"
    assert mismatched["v3"].reason == "does not start with CNS_"
    gone = {g.external_id: g for g in report.groups_of_gone_units}
    assert set(gone) == {"d107", "d106", "c03386"}
    assert gone["d107"].unit_ended == date(2025, 7, 1)
    assert gone["c03386"].successors == (UnitRef(code="03388", name="Phường Đoàn Kết", level="commune"),)
    missing = {u.code for u in report.units_without_group}
    assert "03388" in missing and "03451" not in missing and "03451-05" in missing
    assert len(missing) == 37 + 4  # 38 communes but Mù Cả, and 4 of the 8 villages
    kinds = {d.kind for d in report.duplicates}
    assert "same unit and platform" in kinds
    # On 2025-06-30 the district groups are fine and Tam Đường's title matches its district.
    assert {"d107", "d106", "c03386"}.isdisjoint(g.external_id for g in before.groups_of_gone_units)
    assert all(m.external_id != "d106" for m in before.mismatched)


async def test_name_variants_are_accepted_once_imported(app: App, tmp_path: Path) -> None:
    from broadcaster.cli.demo import data_file
    from broadcaster.units.aliases import AliasImport, import_aliases

    await seed_lai_chau(app)
    await add_accounts(app)
    admin = await actor(app, "admin")
    path = write(tmp_path / "g.csv", HEADER + "03448,zalo,a,CNS_Xã Pa Vệ Sủ\n03460,zalo,b,CNS_Hua Bum\n")
    old = date(2025, 6, 30)
    async with app.transaction() as s:
        await groups.import_groups(s, admin, path, old)
        before = await check_groups(s, old)
    # "Pa Vệ Sủ" already matches "Pa Vệ Sử" (diacritics are ignored); "Hua Bum" needs the alias.
    assert {m.external_id for m in before.mismatched} == {"b"}
    async with app.transaction() as s:
        assert await import_aliases(s, data_file("laichau-name-variants.csv"), old) == AliasImport(
            rows=8, added=8
        )
        assert await import_aliases(s, data_file("laichau-name-variants.csv"), old) == AliasImport(
            rows=8, added=0
        )
        after = await check_groups(s, old)
    assert after.mismatched == ()
    bad = write(tmp_path / "bad.csv", "code,alias\n99999,Xã Không Có\n")
    with pytest.raises(CsvError, match="unit 99999 does not exist") as info:
        async with app.transaction() as s:
            await import_aliases(s, bad, old)
    assert info.value.line == 2
