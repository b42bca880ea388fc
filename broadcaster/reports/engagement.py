"""The engagement log: replies, reactions, clicks and confirmations, filtered by subtree, tier,
platform, content and period (``cns replies`` and ``GET /api/interactions``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.users import Actor
from broadcaster.domain.errors import InputError
from broadcaster.domain.models import ChatGroup, Dispatch, Interaction, Unit
from broadcaster.units.tree import UnitRef, load_tree

KINDS = ("reply", "reaction", "click", "confirmation", "read")


@dataclass(frozen=True, slots=True)
class LogFilter:
    unit_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    dispatch_id: int | None = None
    content_id: int | None = None
    kinds: tuple[str, ...] = ("reply",)
    platform: str | None = None
    tier: str | None = None
    as_of: date | None = None
    limit: int = 200


@dataclass(frozen=True, slots=True)
class InteractionRow:
    """One entry of the engagement log (``person``: the start of the pseudonym, None when anonymous)."""

    at: datetime
    kind: str
    platform: str
    unit: UnitRef | None
    group: str | None  # the group's title
    dispatch: int | None
    content: int | None
    delivery: int | None
    text: str | None
    value: str | None
    count: int
    person: str | None


async def interactions(
    s: AsyncSession, actor: Actor | None, f: LogFilter, today: date
) -> list[InteractionRow]:
    unknown = set(f.kinds) - set(KINDS)
    if unknown:
        raise InputError(f"unknown kind {sorted(unknown)[0]!r} (kinds: {', '.join(KINDS)})")
    if not 1 <= f.limit <= 10_000:
        raise InputError("limit must be between 1 and 10000")
    tree = await load_tree(s, f.as_of or today)
    root_id: int | None = None
    if f.unit_code:
        root_id = tree.get(f.unit_code).id
        if actor is not None:
            actor.require_within(tree, root_id, f"see the engagement of {f.unit_code}")
    elif actor is not None and actor.scope_unit_id is not None:
        root_id = actor.scope_unit_id
    query = (
        select(Interaction, ChatGroup, Unit, Dispatch)
        .outerjoin(ChatGroup, col(ChatGroup.id) == col(Interaction.group_id))
        .outerjoin(Unit, col(Unit.id) == col(Interaction.unit_id))
        .outerjoin(Dispatch, col(Dispatch.id) == col(Interaction.dispatch_id))
        .where(col(Interaction.kind).in_(f.kinds))
        .order_by(col(Interaction.at).desc(), col(Interaction.id).desc())
    )
    if root_id is not None:
        query = query.where(col(Interaction.unit_id).in_([n.id for n in tree.subtree(root_id)]))
    if f.since is not None:
        query = query.where(col(Interaction.at) >= f.since)
    if f.until is not None:
        query = query.where(col(Interaction.at) < f.until)
    if f.dispatch_id is not None:
        query = query.where(col(Interaction.dispatch_id) == f.dispatch_id)
    if f.content_id is not None:
        query = query.where(col(Dispatch.content_id) == f.content_id)
    if f.platform is not None:
        query = query.where(col(Interaction.platform) == f.platform)
    if f.tier is not None:
        query = query.where(col(Unit.level) == f.tier)
    rows = (await s.execute(query.limit(f.limit))).all()
    return [
        InteractionRow(
            i.at,
            i.kind,
            i.platform,
            UnitRef.of(u) if u else None,
            g.title if g else None,
            i.dispatch_id,
            d.content_id if d else None,
            i.delivery_id,
            i.text,
            i.value,
            i.count,
            i.actor_hash[:12] if i.actor_hash else None,
        )
        for i, g, u, d in rows
    ]
