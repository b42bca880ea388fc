"""Stored webhook events a person should look at: those naming nothing we know, and those that failed
(``GET /api/unmatched``). They belong to no unit, so only unscoped admins see them (a scoped admin's
list is empty, as their other lists hold only what lies in their subtree)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.users import Actor, Permission
from broadcaster.domain.models import InboundEvent, pk
from broadcaster.domain.states import EVENT_FOR_ADMINS


@dataclass(frozen=True, slots=True)
class UnmatchedEvent:
    """An unmatched or failed event. ``received_at`` keeps the API's format since its first version,
    ``str(datetime)`` (a space, not a ``T``, between date and time)."""

    id: int
    platform: str
    status: str
    note: str | None
    received_at: str


async def list_unmatched(session: AsyncSession, actor: Actor, *, limit: int = 100) -> list[UnmatchedEvent]:
    """The latest unmatched or failed events, newest first (group managers without a scope only: an
    event that names no group of ours lies in nobody's subtree)."""
    actor.require(Permission.MANAGE_GROUPS)
    if actor.scope_unit_id is not None:
        return []
    rows = (
        await session.execute(
            select(InboundEvent)
            .where(col(InboundEvent.status).in_(EVENT_FOR_ADMINS))
            .order_by(col(InboundEvent.id).desc())
            .limit(limit)
        )
    ).scalars()
    return [UnmatchedEvent(pk(e.id), e.platform, e.status, e.note, str(e.received_at)) for e in rows]
