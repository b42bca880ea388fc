"""Accepted name variants of units (CSV ``code,alias[,note]``), used when matching group titles."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.errors import CsvError, NotFound
from broadcaster.domain.models import UnitAlias
from broadcaster.storage.csvio import read_csv
from broadcaster.units.tree import load_tree


@dataclass(frozen=True, slots=True)
class AliasImport:
    """``cns units aliases``: the file's rows, and how many aliases were new."""

    rows: int
    added: int


async def import_aliases(session: AsyncSession, path: Path, as_of: date) -> AliasImport:
    """Add the aliases of ``path`` (codes resolved on ``as_of``); known ones are skipped."""
    name = str(path)
    tree = await load_tree(session, as_of)
    wanted: dict[tuple[int, str], str] = {}
    for rec in read_csv(path, ("code", "alias"), ("note",)):
        if not rec["alias"] or len(rec["alias"]) > 200:
            raise CsvError(name, "alias must have 1 to 200 characters", rec.line)
        try:
            unit = tree.get(rec["code"])
        except NotFound as exc:
            raise CsvError(name, str(exc), rec.line) from None
        wanted[(unit.id, rec["alias"])] = rec["note"][:200]
    known = await aliases_of(session, {unit_id for unit_id, _ in wanted})
    fresh = [(u, a, n) for (u, a), n in wanted.items() if a not in known.get(u, [])]
    if fresh:
        await session.execute(insert(UnitAlias), [{"unit_id": u, "alias": a, "note": n} for u, a, n in fresh])
    return AliasImport(len(wanted), len(fresh))


async def aliases_of(session: AsyncSession, unit_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    query = select(col(UnitAlias.unit_id), col(UnitAlias.alias)).order_by(col(UnitAlias.id))
    if unit_ids is not None:
        query = query.where(col(UnitAlias.unit_id).in_(list(unit_ids)))
    out: dict[int, list[str]] = defaultdict(list)
    for unit_id, alias in (await session.execute(query)).all():
        out[unit_id].append(alias)
    return out
