"""The engagement log: replies, reactions, clicks and confirmations, filtered by subtree, tier,
platform, content and period (``cns replies`` and ``GET /api/interactions``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.users import Actor
from broadcaster.domain.errors import InputError
from broadcaster.domain.models import ChatGroup, Dispatch, Interaction, Unit
from broadcaster.units.tree import load_tree

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


async def interactions(
    s: AsyncSession, actor: Actor | None, f: LogFilter, today: date
) -> list[dict[str, Any]]:
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
        {
            "at": i.at.isoformat(),
            "kind": i.kind,
            "platform": i.platform,
            "unit": {"code": u.code, "name": u.name, "level": u.level} if u else None,
            "group": g.title if g else None,
            "dispatch": i.dispatch_id,
            "content": d.content_id if d else None,
            "delivery": i.delivery_id,
            "text": i.text,
            "value": i.value,
            "count": i.count,
            "person": i.actor_hash[:12] if i.actor_hash else None,
        }
        for i, g, u, d in rows
    ]
