"""The unit tree as it stood on one day, loaded in two queries and navigated in memory."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.errors import NotFound
from broadcaster.domain.models import Unit, UnitLink, pk
from broadcaster.domain.results import OMIT_IF_NONE
from broadcaster.units.naming import name_key
from broadcaster.units.tiers import TierSchema, tiers_as_of


@dataclass(frozen=True, slots=True)
class UnitRef:
    """A unit as results name it."""

    code: str
    name: str
    level: str

    @classmethod
    def of(cls, unit: UnitNode | Unit) -> UnitRef:
        return cls(unit.code, unit.name, unit.level)


@dataclass(frozen=True, slots=True)
class TreeNode:
    """A unit and (down to the depth asked) its children, in display order."""

    code: str
    name: str
    type: str
    level: str
    children: tuple[TreeNode, ...] | None = field(default=None, metadata=OMIT_IF_NONE)  # none below


@dataclass(frozen=True, slots=True)
class TreeOutline:
    """``cns units tree``: the tree of a day from its top units (or one root), with the units per level."""

    as_of: date
    counts: Mapping[str, int]
    units: int
    tree: tuple[TreeNode, ...]


@dataclass(slots=True)
class UnitNode:
    id: int
    code: str
    name: str
    type: str
    level: str
    parent_id: int | None = None
    children: list[int] = field(default_factory=list)


def valid_on(model: type[Unit] | type[UnitLink], day: date) -> Any:
    """SQL condition: the row's half-open validity interval contains ``day``."""
    return (col(model.valid_from) <= day) & or_(col(model.valid_to).is_(None), col(model.valid_to) > day)


class UnitTree:
    def __init__(self, as_of: date, schema: TierSchema, nodes: dict[int, UnitNode]) -> None:
        self.as_of = as_of
        self.schema = schema
        self.nodes = nodes
        self.by_code = {n.code: n for n in nodes.values()}
        self._rank = {name: i for i, name in enumerate(schema.names)}
        self.roots = sorted((n for n in nodes.values() if n.parent_id is None), key=lambda n: n.code)

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, code: str) -> UnitNode:
        try:
            return self.by_code[code]
        except KeyError:
            raise NotFound(f"unit {code} does not exist on {self.as_of.isoformat()}") from None

    def subtree(self, root_id: int) -> Iterator[UnitNode]:
        stack = [root_id]
        while stack:
            node = self.nodes[stack.pop()]
            yield node
            stack.extend(reversed(node.children))

    def ancestors(self, unit_id: int) -> list[UnitNode]:
        chain: list[UnitNode] = []
        parent = self.nodes[unit_id].parent_id
        while parent is not None:
            chain.append(self.nodes[parent])
            parent = self.nodes[parent].parent_id
        return chain

    def is_within(self, unit_id: int, ancestor_id: int) -> bool:
        return unit_id == ancestor_id or any(a.id == ancestor_id for a in self.ancestors(unit_id))

    def counts(self, nodes: Iterator[UnitNode] | None = None) -> dict[str, int]:
        """Units per level, in tier order (levels with no unit are left out)."""
        tally: dict[str, int] = {}
        for node in self.nodes.values() if nodes is None else nodes:
            tally[node.level] = tally.get(node.level, 0) + 1
        return dict(sorted(tally.items(), key=lambda kv: (self._rank.get(kv[0], 99), kv[0])))

    def sorted_children(self, node_id: int) -> list[int]:
        """Children for display: by tier, then name as people read it (diacritics folded), then code.

        Sorting is done here, not on load: folding 100,000 village names costs more than planning."""
        nodes, rank = self.nodes, self._rank
        return sorted(
            nodes[node_id].children,
            key=lambda c: (rank.get(nodes[c].level, 99), name_key(nodes[c].name), nodes[c].code),
        )

    def outline(self, root_id: int, depth: int | None = None) -> TreeNode:
        """``root_id`` and its descendants down to ``depth`` levels below it (all when None)."""
        node = self.nodes[root_id]
        children = None
        if node.children and (depth is None or depth > 0):
            below = None if depth is None else depth - 1
            children = tuple(self.outline(c, below) for c in self.sorted_children(root_id))
        return TreeNode(node.code, node.name, node.type, node.level, children)

    def render(self, root_id: int, depth: int | None = None) -> Iterator[str]:
        stack: list[tuple[int, int]] = [(root_id, 0)]
        while stack:
            node_id, indent = stack.pop()
            node = self.nodes[node_id]
            yield f"{'  ' * indent}{node.code}  {node.name}  [{node.level}]"
            if depth is None or indent < depth:
                stack.extend((c, indent + 1) for c in reversed(self.sorted_children(node_id)))


async def load_tree(session: AsyncSession, as_of: date) -> UnitTree:
    schema = await tiers_as_of(session, as_of)
    units = await session.execute(
        select(col(Unit.id), col(Unit.code), col(Unit.name), col(Unit.type), col(Unit.level)).where(
            valid_on(Unit, as_of)
        )
    )
    nodes = {
        pk(uid): UnitNode(pk(uid), code, name, typ, level) for uid, code, name, typ, level in units.all()
    }
    links = await session.execute(
        select(col(UnitLink.child_id), col(UnitLink.parent_id)).where(valid_on(UnitLink, as_of))
    )
    for child, parent in links.all():
        if child in nodes and parent in nodes:
            nodes[child].parent_id = parent
            nodes[parent].children.append(child)
    return UnitTree(as_of, schema, nodes)


async def outline(
    session: AsyncSession, as_of: date, root: str | None = None, depth: int | None = None
) -> TreeOutline:
    """The tree on ``as_of`` from its top units (or from ``root``), ``depth`` levels deep."""
    tree = await load_tree(session, as_of)
    roots = [tree.get(root)] if root else tree.roots
    counts = tree.counts(n for r in roots for n in tree.subtree(r.id))
    return TreeOutline(as_of, counts, sum(counts.values()), tuple(tree.outline(r.id, depth) for r in roots))
