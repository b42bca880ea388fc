"""Units over time: the Lai Châu 2022 structure, the 2025 reform with its mapping, and bad files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broadcaster.cli.demo import data_file
from broadcaster.domain.errors import CsvError, InputError
from broadcaster.domain.models import Unit, UnitLink, UnitSuccession
from broadcaster.storage.app import App
from broadcaster.units.importer import import_units
from broadcaster.units.tree import load_tree
from tests.helpers import REFORM, seed_lai_chau, write

HEADER = "code,name,type,level,parent_code\n"


async def _count(app: App, model: type[Unit] | type[UnitLink] | type[UnitSuccession]) -> int:
    async with app.transaction() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def test_both_trees_stay_queryable(app: App) -> None:
    await seed_lai_chau(app, villages=False)
    async with app.transaction() as s:
        old = await load_tree(s, date(2025, 6, 30))
        new = await load_tree(s, REFORM)
    assert old.counts() == {"province": 1, "district": 8, "commune": 106}
    assert new.counts() == {"province": 1, "commune": 38}
    province = old.get("12")
    assert [old.nodes[c].level for c in province.children] == ["district"] * 8
    assert {new.nodes[c].level for c in new.get("12").children} == {"commune"}
    # The same code names different units before and after the reform.
    assert old.get("03388").name == "Phường Quyết Tiến"
    assert new.get("03388").name == "Phường Đoàn Kết"
    # An unchanged commune is the same unit, re-parented from its district to the province.
    assert old.get("03451").id == new.get("03451").id
    assert old.nodes[old.get("03451").parent_id or 0].code == "107"
    assert new.get("03451").parent_id == new.get("12").id


async def test_reform_records_successions(app: App) -> None:
    await seed_lai_chau(app, villages=False)
    async with app.transaction() as s:
        rows = (
            await s.execute(
                select(Unit.code, Unit.name)  # type: ignore[call-overload]
                .join(UnitSuccession, UnitSuccession.new_unit_id == Unit.id)  # type: ignore[arg-type]
                .where(UnitSuccession.old_unit_id == (await load_tree(s, date(2025, 6, 1))).get("03386").id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("03388", "Phường Đoàn Kết")]


async def test_reimport_is_idempotent(app: App) -> None:
    await seed_lai_chau(app)
    counts = [await _count(app, m) for m in (Unit, UnitLink, UnitSuccession)]
    async with app.transaction() as s:
        report = await import_units(
            s, data_file("laichau-2025-units.csv"), REFORM, data_file("laichau-2022-to-2025-communes.csv")
        )
    assert (report.added, report.changed, report.closed, report.moved) == (0, 0, 0, 0)
    assert report.unchanged == 39
    assert [await _count(app, m) for m in (Unit, UnitLink, UnitSuccession)] == counts


async def test_villages_follow_their_merged_commune(app: App, tmp_path: Path) -> None:
    """A village under a commune that merges moves to the successor commune without being re-imported."""
    async with app.transaction() as s:
        from broadcaster.directory import users

        await users.add_user(s, None, "admin", "admin", today=date(2026, 1, 1))
    async with app.transaction() as s:
        await import_units(s, data_file("laichau-2022-units.csv"), date(2022, 1, 1))
    villages = write(tmp_path / "v.csv", HEADER + "03386-01,Tổ 1,tổ dân phố,village,03386\n")
    async with app.transaction() as s:
        await import_units(s, villages, date(2023, 1, 1))
    async with app.transaction() as s:
        report = await import_units(
            s, data_file("laichau-2025-units.csv"), REFORM, data_file("laichau-2022-to-2025-communes.csv")
        )
        new = await load_tree(s, REFORM)
        old = await load_tree(s, date(2024, 1, 1))
    assert report.moved >= 1
    assert new.nodes[new.get("03386-01").parent_id or 0].name == "Phường Đoàn Kết"
    assert old.nodes[old.get("03386-01").parent_id or 0].name == "Phường Quyết Thắng"


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        ("code,name,type,level\n12,Tỉnh X,tỉnh,province\n", r"missing column\(s\): parent_code", 1),
        (HEADER + "12,Tỉnh X,tỉnh,province,\n12,Tỉnh Y,tỉnh,province,\n", "duplicate code 12", 3),
        (HEADER + "12,Tỉnh X,tỉnh,province,\n001,Huyện A,huyện,district,99\n", "unknown parent code 99", 3),
        (
            HEADER + "12,Tỉnh X,tỉnh,province,\n0001,Xã A,xã,commune,0002\n0002,Xã B,xã,commune,0001\n",
            "parent cycle: 0001 -> 0002 -> 0001",
            3,
        ),
        (
            HEADER + "12,Tỉnh X,tỉnh,province,\n001,Huyện A,huyện,hamlet,12\n",
            "level 'hamlet' is not a tier",
            3,
        ),
        (HEADER + "12,Tỉnh X,tỉnh,province,\n0001,Xã A,xã,commune,\n", "has no parent_code", 3),
        (
            HEADER + "12,Tỉnh X,tỉnh,province,\n001,Huyện A,huyện,district,0001\n0001,Xã A,xã,commune,12\n",
            "not above a district",
            3,
        ),
        (HEADER + "12,Tỉnh X,tỉnh,province\n", "expected 5 fields, found 4", 2),
    ],
)
async def test_bad_files_name_the_line_and_write_nothing(
    app: App, tmp_path: Path, body: str, message: str, line: int
) -> None:
    path = write(tmp_path / "bad.csv", body)
    with pytest.raises(CsvError, match=message) as info:
        async with app.transaction() as s:
            await import_units(s, path, date(2022, 1, 1))
    assert info.value.line == line
    assert await _count(app, Unit) == 0


async def test_not_utf8_is_refused(app: App, tmp_path: Path) -> None:
    path = write(tmp_path / "latin.csv", HEADER + "12,Tỉnh Lai Châu,tỉnh,province,\n", encoding="utf-16")
    with pytest.raises(CsvError, match="not UTF-8"):
        async with app.transaction() as s:
            await import_units(s, path, date(2022, 1, 1))


async def test_bom_and_blank_lines_are_accepted(app: App, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(
        (
            "\ufeff"
            + HEADER
            + "\n12,Tỉnh Lai Châu,tỉnh,province,\n\n\n105,TP Lai Châu,thành phố,district,12\n"
        ).encode()
    )
    async with app.transaction() as s:
        report = await import_units(s, path, date(2022, 1, 1))
    assert report.added == 2


async def test_nfd_names_are_stored_nfc(app: App, tmp_path: Path) -> None:
    import unicodedata

    path = write(
        tmp_path / "nfd.csv", unicodedata.normalize("NFD", HEADER + "12,Tỉnh Lai Châu,tỉnh,province,\n")
    )
    async with app.transaction() as s:
        await import_units(s, path, date(2022, 1, 1))
        tree = await load_tree(s, date(2022, 1, 1))
    assert tree.get("12").name == unicodedata.normalize("NFC", "Tỉnh Lai Châu")


async def test_mapping_errors(app: App, tmp_path: Path) -> None:
    await seed_lai_chau(app, villages=False)
    bad_old = write(tmp_path / "m1.csv", "old_code,new_code\n99999,03388\n")
    with pytest.raises(CsvError, match="old code 99999 is not a unit on 2025-06-30") as info:
        async with app.transaction() as s:
            await import_units(s, data_file("laichau-2025-units.csv"), REFORM, bad_old)
    assert info.value.line == 2
    bad_new = write(tmp_path / "m2.csv", "old_code,new_code\n03386,77777\n")
    with pytest.raises(CsvError, match="new code 77777 is not in the imported units file"):
        async with app.transaction() as s:
            await import_units(s, data_file("laichau-2025-units.csv"), REFORM, bad_new)


async def test_out_of_order_import_is_refused(app: App, tmp_path: Path) -> None:
    await seed_lai_chau(app, villages=False)
    renamed = write(
        tmp_path / "r.csv", HEADER + "12,Tỉnh Lai Châu,tỉnh,province,\n03388,Phường Mới,phường,commune,12\n"
    )
    with pytest.raises(InputError, match="import structures in date order"):
        async with app.transaction() as s:
            await import_units(s, renamed, date(2024, 1, 1))
