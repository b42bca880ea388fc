"""The tier schema as data: ordered levels with effective dates.

The default is Vietnam's: province > district > commune > village until 30 June 2025, and
province > commune > village from 1 July 2025 (the district level abolished). Other schemas are rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import TierLevel

DISTRICTS_ABOLISHED = date(2025, 7, 1)
SCHEMA_START = date(1900, 1, 1)

DEFAULT_TIERS: tuple[tuple[str, int, str, date | None], ...] = (
    ("province", 1, "Tỉnh", None),
    ("district", 2, "Huyện", DISTRICTS_ABOLISHED),
    ("commune", 3, "Xã", None),
    ("village", 4, "Thôn / bản", None),
)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    rank: int
    label: str


class TierSchema:
    """The levels in force on one day, in rank order (1 = top)."""

    def __init__(self, as_of: date, tiers: list[Tier]) -> None:
        self.as_of = as_of
        self.tiers = sorted(tiers, key=lambda t: t.rank)
        self._by_name = {t.name: t for t in self.tiers}

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def rank(self, name: str) -> int:
        return self._by_name[name].rank

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tiers]


@dataclass(frozen=True, slots=True)
class TierList:
    """``cns tiers list``: the levels in force on a day, top first."""

    as_of: date
    tiers: tuple[Tier, ...]


async def seed_default_tiers(session: AsyncSession) -> int:
    """Insert the default schema if no tier exists yet; returns the number of rows added."""
    if (await session.execute(select(col(TierLevel.id)).limit(1))).first() is not None:
        return 0
    for name, rank, label, valid_to in DEFAULT_TIERS:
        session.add(TierLevel(name=name, rank=rank, label=label, valid_from=SCHEMA_START, valid_to=valid_to))
    await session.flush()
    return len(DEFAULT_TIERS)


async def tiers_as_of(session: AsyncSession, as_of: date) -> TierSchema:
    result = await session.execute(
        select(col(TierLevel.name), col(TierLevel.rank), col(TierLevel.label)).where(
            col(TierLevel.valid_from) <= as_of,
            or_(col(TierLevel.valid_to).is_(None), col(TierLevel.valid_to) > as_of),
        )
    )
    return TierSchema(as_of, [Tier(name, rank, label) for name, rank, label in result.all()])


async def list_tiers(session: AsyncSession, as_of: date) -> TierList:
    return TierList(as_of, tuple((await tiers_as_of(session, as_of)).tiers))
