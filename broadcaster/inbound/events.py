"""Stored webhook events a person should look at: those naming nothing we know, and those that failed
(``GET /api/unmatched``)."""

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
    """The latest unmatched or failed events, newest first (group managers only)."""
    actor.require(Permission.MANAGE_GROUPS)
    rows = (
        await session.execute(
            select(InboundEvent)
            .where(col(InboundEvent.status).in_(EVENT_FOR_ADMINS))
            .order_by(col(InboundEvent.id).desc())
            .limit(limit)
        )
    ).scalars()
    return [UnmatchedEvent(pk(e.id), e.platform, e.status, e.note, str(e.received_at)) for e in rows]
