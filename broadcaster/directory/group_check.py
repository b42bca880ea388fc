"""``cns groups check``: titles against the CNS convention, units without groups, groups of units that
no longer exist, and duplicates, all on the tree of one day."""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import ChatGroup, Unit, UnitSuccession, pk
from broadcaster.domain.states import GroupStatus
from broadcaster.units.aliases import aliases_of
from broadcaster.units.naming import expected_key, expected_title, fold, parse_title
from broadcaster.units.tree import UnitNode, UnitRef, UnitTree, load_tree


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A group whose title does not name its unit by the convention."""

    group_id: int
    title: str
    platform: str
    external_id: str
    unit: UnitRef
    expected_title: str
    reason: str
    likely_unit: UnitRef | None  # the unit the title seems to name instead


@dataclass(frozen=True, slots=True)
class GoneUnitGroup:
    """An active group of a unit that no longer exists on the day."""

    group_id: int
    title: str
    platform: str
    external_id: str
    unit: UnitRef
    unit_ended: date | None
    successors: tuple[UnitRef, ...]


@dataclass(frozen=True, slots=True)
class SameUnitDuplicate:
    """Several active groups of one unit on one platform."""

    kind: str = field(default="same unit and platform", init=False)
    unit: UnitRef
    platform: str
    group_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SameTitleDuplicate:
    """Several active groups on one platform whose titles name the same unit."""

    kind: str = field(default="same title", init=False)
    title: str
    title_key: str
    platform: str
    group_ids: tuple[int, ...]


Duplicate = SameUnitDuplicate | SameTitleDuplicate


@dataclass(frozen=True, slots=True)
class CheckReport:
    """``cns groups check``: the active groups against the tree of ``as_of``."""

    as_of: date
    groups: int
    ok: int
    problems: int
    mismatched: tuple[Mismatch, ...]
    units_without_group: tuple[UnitRef, ...]
    groups_of_gone_units: tuple[GoneUnitGroup, ...]
    duplicates: tuple[Duplicate, ...]


def _names(tree: UnitTree, node: UnitNode) -> list[str]:
    if node.level == "village" and node.parent_id is not None:
        return [node.name, tree.nodes[node.parent_id].name]
    return [node.name]


def _accepted(tree: UnitTree, node: UnitNode, aliases: dict[int, list[str]]) -> set[str]:
    """Every title key that names ``node``: its name or an alias, and for a village its commune's too."""
    own = [node.name, *aliases.get(node.id, [])]
    if node.level == "village" and node.parent_id is not None:
        parent = tree.nodes[node.parent_id]
        return {
            expected_key([n, p], node.level) for n in own for p in [parent.name, *aliases.get(parent.id, [])]
        }
    return {expected_key([n], node.level) for n in own}


class _Index:
    """Expected title keys of every unit on the day, for exact and fuzzy lookup."""

    def __init__(self, tree: UnitTree, aliases: dict[int, list[str]]) -> None:
        self.tree = tree
        self.accepted: dict[int, set[str]] = {}
        self.by_key: dict[str, list[UnitNode]] = defaultdict(list)
        for node in tree.nodes.values():
            keys = self.accepted[node.id] = _accepted(tree, node, aliases)
            for key in keys:
                self.by_key[key].append(node)
        self._keys = list(self.by_key)

    def likely(self, key: str, prefer_level: str | None) -> UnitNode | None:
        candidates = self.by_key.get(key)
        if not candidates:
            close = difflib.get_close_matches(key, self._keys, n=1, cutoff=0.75)
            candidates = self.by_key[close[0]] if close else []
        if not candidates:
            return None
        # "Tam Đường" is both a district and a township: prefer the level the group is registered at.
        return sorted(candidates, key=lambda n: (n.level != prefer_level, n.code))[0]


async def check_groups(session: AsyncSession, as_of: date) -> CheckReport:
    tree = await load_tree(session, as_of)
    index = _Index(tree, await aliases_of(session))
    rows = await session.execute(
        select(ChatGroup, Unit)
        .join(Unit, col(Unit.id) == col(ChatGroup.unit_id))
        .where(col(ChatGroup.status) == GroupStatus.ACTIVE)
        .order_by(col(ChatGroup.id))
    )
    groups = rows.all()
    ok = 0
    mismatched: list[Mismatch] = []
    gone: list[GoneUnitGroup] = []
    covered: set[int] = set()
    by_unit_platform: dict[tuple[int, str], list[ChatGroup]] = defaultdict(list)
    by_title: dict[tuple[str, str], list[ChatGroup]] = defaultdict(list)
    successors = await _successors(session, {u.id for _, u in groups if u.id not in tree.nodes and u.id})
    for group, unit in groups:
        parsed = parse_title(group.title)
        if parsed is not None:
            by_title[(group.platform, parsed.key)].append(group)
        node = tree.nodes.get(unit.id or -1)
        if node is None:
            gone.append(
                GoneUnitGroup(
                    pk(group.id),
                    group.title,
                    group.platform,
                    group.external_id,
                    UnitRef.of(unit),
                    unit.valid_to,
                    tuple(successors.get(unit.id or -1, [])),
                )
            )
            continue
        covered.add(node.id)
        by_unit_platform[(node.id, group.platform)].append(group)
        expected = expected_title(_names(tree, node), node.level)
        if parsed is not None and parsed.key in index.accepted[node.id]:
            ok += 1
            continue
        likely = index.likely(parsed.key, node.level) if parsed is not None else None
        mismatched.append(
            Mismatch(
                pk(group.id),
                group.title,
                group.platform,
                group.external_id,
                UnitRef.of(node),
                expected,
                "does not start with CNS_" if parsed is None else "title names another unit",
                UnitRef.of(likely) if likely is not None and likely.id != node.id else None,
            )
        )
    rank = {name: i for i, name in enumerate(tree.schema.names)}
    without = tuple(
        UnitRef.of(n)
        for n in sorted(tree.nodes.values(), key=lambda n: (rank.get(n.level, 99), n.code))
        if n.id not in covered
    )
    duplicates: list[Duplicate] = [
        SameUnitDuplicate(UnitRef.of(tree.nodes[unit_id]), platform, tuple(pk(g.id) for g in same))
        for (unit_id, platform), same in by_unit_platform.items()
        if len(same) > 1
    ]
    for (platform, key), same in by_title.items():
        if len({g.unit_id for g in same}) > 1 or (
            len(same) > 1 and not _same_unit_reported(duplicates, same)
        ):
            duplicates.append(
                SameTitleDuplicate(same[0].title, fold(key), platform, tuple(pk(g.id) for g in same))
            )
    problems = len(mismatched) + len(without) + len(gone) + len(duplicates)
    return CheckReport(
        as_of, len(groups), ok, problems, tuple(mismatched), without, tuple(gone), tuple(duplicates)
    )


def _same_unit_reported(duplicates: list[Duplicate], same: list[ChatGroup]) -> bool:
    ids = {g.id for g in same}
    return any(ids <= set(d.group_ids) for d in duplicates)


async def _successors(session: AsyncSession, unit_ids: set[int]) -> dict[int, list[UnitRef]]:
    if not unit_ids:
        return {}
    rows = await session.execute(
        select(col(UnitSuccession.old_unit_id), Unit)
        .join(Unit, col(Unit.id) == col(UnitSuccession.new_unit_id))
        .where(col(UnitSuccession.old_unit_id).in_(unit_ids))
    )
    out: dict[int, list[UnitRef]] = defaultdict(list)
    for old_id, unit in rows:
        out[old_id].append(UnitRef.of(unit))
    return out


async def match_title(session: AsyncSession, title: str, as_of: date) -> tuple[UnitNode | None, str]:
    """The unit a group title names under the convention, and how: ``exact`` (its name or a legal
    alias), ``fuzzy`` (a close spelling) or ``none`` (no unit, or not a ``CNS_`` title)."""
    parsed = parse_title(title)
    if parsed is None:
        return None, "none"
    index = _Index(await load_tree(session, as_of), await aliases_of(session))
    exact = index.by_key.get(parsed.key)
    if exact:
        return sorted(exact, key=lambda n: n.code)[0], "exact"
    node = index.likely(parsed.key, None)
    return node, ("fuzzy" if node is not None else "none")
