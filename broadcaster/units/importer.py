"""Import units from CSV, including reorganisations (merges, abolished levels) with an old -> new mapping.

Model: a unit row is one entity over ``[valid_from, valid_to)``; its parent is a separate, dated link.
A unit whose name, type or level changes is closed and a new row opened (a code can be reused by a
different entity, as in Lai Châu 2025); a unit that only moves (a commune whose district was abolished)
keeps its row and gets a new parent link, so its groups and history stay attached to it.

Without ``--mapping`` an import adds and updates units and closes nothing else. With a mapping it is a
reorganisation: below the file's root units, every existing unit of a level the file covers (or of a
level the tier schema no longer has) that the file does not keep is closed on the import date; children
of closed units that the file does not mention (villages) move to the successor the mapping names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.errors import CsvError, InputError
from broadcaster.domain.models import Unit, UnitLink, UnitSuccession, pk
from broadcaster.storage.csvio import CsvRow, read_csv
from broadcaster.units.tiers import TierSchema, tiers_as_of
from broadcaster.units.tree import UnitTree, load_tree, valid_on

UNIT_COLUMNS = ("code", "name", "type", "level", "parent_code")
MAPPING_COLUMNS = ("old_code", "new_code")
MAPPING_OPTIONAL = ("old_name", "old_district_code", "new_name", "merge_type")
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ImportReport:
    """``cns units import``: what one import did."""

    valid_from: date
    rows: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    closed: int = 0
    successions: int = 0


@dataclass(slots=True)
class _Row:
    line: int
    code: str
    name: str
    type: str
    level: str
    parent_code: str


def _parse_rows(path: str, records: list[CsvRow], schema: TierSchema) -> dict[str, _Row]:
    rows: dict[str, _Row] = {}
    top = schema.names[0] if schema.names else None
    for rec in records:
        row = _Row(
            rec.line, rec["code"], rec["name"], rec["type"].lower(), rec["level"].lower(), rec["parent_code"]
        )
        for column, limit in (("code", 32), ("name", 200), ("type", 32), ("level", 32)):
            value = getattr(row, column)
            if not value:
                raise CsvError(path, f"empty {column}", row.line)
            if len(value) > limit:
                raise CsvError(path, f"{column} longer than {limit} characters", row.line)
        if row.code in rows:
            raise CsvError(path, f"duplicate code {row.code} (first on line {rows[row.code].line})", row.line)
        if row.level not in schema:
            known = ", ".join(schema.names) or "none"
            raise CsvError(
                path, f"level {row.level!r} is not a tier on {schema.as_of} (tiers: {known})", row.line
            )
        if not row.parent_code and row.level != top:
            raise CsvError(path, f"unit {row.code} has no parent_code (only a {top} may have none)", row.line)
        rows[row.code] = row
    return rows


def _check_parents(path: str, rows: dict[str, _Row], tree: UnitTree, schema: TierSchema) -> None:
    for row in rows.values():
        if not row.parent_code:
            continue
        # Follow the chain inside the file first: a cycle must be named as one.
        seen = [row.code]
        parent = rows.get(row.parent_code)
        while parent is not None and parent.parent_code:
            if parent.code in seen:
                chain = " -> ".join([*seen, parent.code])
                raise CsvError(path, f"parent cycle: {chain}", row.line)
            seen.append(parent.code)
            parent = rows.get(parent.parent_code)
        if row.parent_code in rows:
            parent_level = rows[row.parent_code].level
        elif row.parent_code in tree.by_code:
            parent_level = tree.by_code[row.parent_code].level
        else:
            raise CsvError(path, f"unknown parent code {row.parent_code} of unit {row.code}", row.line)
        if parent_level not in schema or schema.rank(parent_level) >= schema.rank(row.level):
            raise CsvError(
                path,
                f"parent {row.parent_code} is a {parent_level}, which is not above a {row.level}",
                row.line,
            )


def _read_mapping(
    path: Path, rows: dict[str, _Row], before: UnitTree
) -> tuple[dict[str, str], dict[str, str]]:
    """Old codes name units of the structure in force the day before the import date."""
    name = str(path)
    mapping: dict[str, str] = {}
    kinds: dict[str, str] = {}
    lines: dict[str, int] = {}
    for rec in read_csv(path, MAPPING_COLUMNS, MAPPING_OPTIONAL):
        old, new = rec["old_code"], rec["new_code"]
        if not old or not new:
            raise CsvError(name, "empty old_code or new_code", rec.line)
        if old in mapping:
            raise CsvError(name, f"old code {old} mapped twice (first on line {lines[old]})", rec.line)
        if old not in before.by_code:
            raise CsvError(name, f"old code {old} is not a unit on {before.as_of}", rec.line)
        if new not in rows:
            raise CsvError(name, f"new code {new} is not in the imported units file", rec.line)
        mapping[old], kinds[old], lines[old] = new, rec["merge_type"] or "merge", rec.line
    return mapping, kinds


async def import_units(
    session: AsyncSession, path: Path, valid_from: date, mapping_path: Path | None = None
) -> ImportReport:
    """Import ``path`` as the structure in force from ``valid_from``. The caller commits or rolls back."""
    name = str(path)
    schema = await tiers_as_of(session, valid_from)
    rows = _parse_rows(name, read_csv(path, UNIT_COLUMNS), schema)
    tree = await load_tree(session, valid_from)
    _check_parents(name, rows, tree, schema)
    before = await load_tree(session, valid_from - timedelta(days=1)) if mapping_path else tree
    mapping, kinds = _read_mapping(mapping_path, rows, before) if mapping_path else ({}, {})
    importer = _Importer(session, name, valid_from, rows, tree, before, mapping, kinds)
    await importer.plan_versions()
    if mapping_path is not None:
        importer.plan_closures(schema)
    importer.plan_moves()
    await importer.write()
    await _check_tree(session, valid_from)
    return importer.report()


class _Importer:
    """One import: decide (no writes) what to keep, close, create and move, then write it in bulk."""

    def __init__(
        self,
        session: AsyncSession,
        name: str,
        day: date,
        rows: dict[str, _Row],
        tree: UnitTree,
        before: UnitTree,
        mapping: dict[str, str],
        kinds: dict[str, str],
    ) -> None:
        self.session, self.name, self.day, self.rows = session, name, day, rows
        self.tree, self.before, self.mapping, self.kinds = tree, before, mapping, kinds
        self.added = self.changed = self.unchanged = self.moved = self.successions = 0
        self.kept: dict[str, int] = {}  # code -> unit id from the import date (kept, corrected or new)
        self.fix_in_place: list[tuple[int, _Row]] = []
        self.closed: set[int] = set()
        self.new_rows: list[_Row] = []
        self.moves: list[tuple[int, str]] = []  # (child id, successor code)

    def report(self) -> ImportReport:
        return ImportReport(
            self.day,
            len(self.rows),
            self.added,
            self.changed,
            self.unchanged,
            self.moved,
            len(self.closed),
            self.successions,
        )

    def _fail(self, row: _Row | None, message: str) -> InputError:
        return InputError(f"{self.name}:{row.line}: {message}" if row else f"{self.name}: {message}")

    async def plan_versions(self) -> None:
        open_rows = {
            u.code: u
            for u in (await self.session.execute(select(Unit).where(valid_on(Unit, self.day)))).scalars()
        }
        later = dict(
            (
                await self.session.execute(
                    select(col(Unit.code), func.min(col(Unit.valid_from)))
                    .where(col(Unit.valid_from) > self.day)
                    .group_by(col(Unit.code))
                )
            ).all()
        )
        for row in self.rows.values():
            existing = open_rows.get(row.code)
            if existing is not None and (existing.name, existing.type, existing.level) == (
                row.name,
                row.type,
                row.level,
            ):
                self.kept[row.code] = pk(existing.id)
                self.unchanged += 1
            elif existing is not None and existing.valid_from == self.day:
                self.fix_in_place.append((pk(existing.id), row))  # a correction of an import on this date
                self.kept[row.code] = pk(existing.id)
                self.changed += 1
            else:
                if existing is not None:
                    if existing.valid_to is not None:
                        raise self._fail(
                            row,
                            f"unit {row.code} already ends on {existing.valid_to}; "
                            "import structures in date order",
                        )
                    self.closed.add(pk(existing.id))
                    self.changed += 1
                else:
                    self.added += 1
                if row.code in later:
                    raise self._fail(
                        row,
                        f"unit {row.code} already has a version from {later[row.code]}; "
                        "import structures in date order",
                    )
                self.new_rows.append(row)

    def plan_closures(self, schema: TierSchema) -> None:
        """Reorganisation: close what the file replaces below its root units."""
        file_levels = {r.level for r in self.rows.values()}
        for root in (r for r in self.rows.values() if not r.parent_code and r.code in self.tree.by_code):
            for node in self.tree.subtree(self.tree.by_code[root.code].id):
                if self.kept.get(node.code) == node.id:
                    continue
                if node.level in file_levels or node.level not in schema:
                    self.closed.add(node.id)
        for row in self.rows.values():
            parent = row.parent_code
            if parent and parent not in self.rows and self.tree.by_code[parent].id in self.closed:
                raise self._fail(
                    row, f"parent {parent} of unit {row.code} closes on {self.day}; include it in the file"
                )

    def plan_moves(self) -> None:
        """Children the file does not mention follow their closed parent to its successor."""
        for node_id in self.closed:
            node = self.tree.nodes[node_id]
            for child_id in node.children:
                child = self.tree.nodes[child_id]
                if child_id in self.closed or child.code in self.rows:
                    continue
                successor = self.mapping.get(node.code) or (node.code if node.code in self.rows else None)
                if successor is None:
                    raise self._fail(
                        None,
                        f"unit {child.code} ({child.name}) would lose its parent {node.code} "
                        f"on {self.day}: map {node.code} to its successor in the mapping file",
                    )
                self.moves.append((child_id, successor))

    async def write(self) -> None:
        await self._write_units()
        await self._write_links()
        await self._write_successions()
        await self.session.flush()

    async def _write_units(self) -> None:
        for chunk in _chunks(sorted(self.closed)):
            await self.session.execute(update(Unit).where(col(Unit.id).in_(chunk)).values(valid_to=self.day))
        for unit_id, row in self.fix_in_place:
            await self.session.execute(
                update(Unit)
                .where(col(Unit.id) == unit_id)
                .values(name=row.name, type=row.type, level=row.level)
            )
        if not self.new_rows:
            return
        await self.session.execute(
            insert(Unit),
            [
                {"code": r.code, "name": r.name, "type": r.type, "level": r.level, "valid_from": self.day}
                for r in self.new_rows
            ],
        )
        created = await self.session.execute(
            select(col(Unit.code), col(Unit.id)).where(col(Unit.valid_from) == self.day)
        )
        ids = dict(created.all())
        for r in self.new_rows:
            self.kept[r.code] = pk(ids[r.code])

    async def _write_links(self) -> None:
        wanted: dict[int, int] = {}  # child id -> parent id from the import date
        for row in self.rows.values():
            if row.parent_code:
                parent = self.kept.get(row.parent_code) or self.tree.by_code[row.parent_code].id
                wanted[self.kept[row.code]] = parent
        for child_id, successor in self.moves:
            wanted[child_id] = self.kept[successor]
        nodes = self.tree.nodes
        relink = [c for c, p in wanted.items() if c not in nodes or nodes[c].parent_id != p]
        for chunk in _chunks(sorted(set(relink) | self.closed)):
            open_links = valid_on(UnitLink, self.day) & col(UnitLink.child_id).in_(chunk)
            await self.session.execute(
                delete(UnitLink).where(open_links & (col(UnitLink.valid_from) == self.day))
            )
            await self.session.execute(update(UnitLink).where(open_links).values(valid_to=self.day))
        if relink:
            await self.session.execute(
                insert(UnitLink),
                [{"child_id": c, "parent_id": wanted[c], "valid_from": self.day} for c in relink],
            )
        self.moved = len([c for c in relink if c in nodes])  # existing units under a new parent

    async def _write_successions(self) -> None:
        pairs = [
            (self.before.by_code[old].id, self.kept[new], self.kinds[old])
            for old, new in self.mapping.items()
            if self.before.by_code[old].id != self.kept[new]
        ]
        if not pairs:
            return
        known = set(
            (
                await self.session.execute(
                    select(col(UnitSuccession.old_unit_id), col(UnitSuccession.new_unit_id)).where(
                        col(UnitSuccession.old_unit_id).in_([p[0] for p in pairs])
                    )
                )
            ).all()
        )
        fresh = [p for p in pairs if (p[0], p[1]) not in known]
        if fresh:
            await self.session.execute(
                insert(UnitSuccession),
                [{"old_unit_id": o, "new_unit_id": n, "effective": self.day, "kind": k} for o, n, k in fresh],
            )
        self.successions = len(fresh)


async def _check_tree(session: AsyncSession, day: date) -> None:
    """Last line of defence: the resulting tree on ``day`` is well formed."""
    tree = await load_tree(session, day)
    top = tree.schema.names[0] if tree.schema.names else None
    for node in tree.nodes.values():
        if node.parent_id is None:
            if node.level != top:
                raise InputError(f"after the import, unit {node.code} ({node.name}) has no parent on {day}")
            continue
        parent = tree.nodes[node.parent_id]
        if node.level not in tree.schema or tree.schema.rank(parent.level) >= tree.schema.rank(node.level):
            raise InputError(
                f"after the import, unit {node.code} ({node.level}) sits under {parent.code} ({parent.level})"
            )


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    batch: list[int] = []
    for item in ids:
        batch.append(item)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch
