"""Citizens' data: pseudonyms, retention of raw payloads, export and deletion on request.

A platform user id is never stored: interactions carry ``HMAC-SHA256(key, platform:user_id)`` (keyed, so
the ids cannot be recovered by hashing every possible id without the key). Raw webhook bodies (which do
contain ids and names) are kept for ``CNS_RAW_RETENTION_DAYS`` to debug and re-process, then purged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import InboundEvent, Interaction, pk
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import EVENT_UNPROCESSED


def pseudonym(key: bytes, platform: str, user_id: str) -> str:
    return hmac.new(key, f"{platform}:{user_id}".encode(), hashlib.sha256).hexdigest()[:32]


async def purge_raw(s: AsyncSession, retention_days: int) -> int:
    """Drop the raw bodies of events processed longer ago than the retention period."""
    cutoff = utcnow() - timedelta(days=retention_days)
    result = await s.execute(
        update(InboundEvent)
        .where(
            col(InboundEvent.received_at) < cutoff,
            col(InboundEvent.body).is_not(None),
            col(InboundEvent.status).not_in(EVENT_UNPROCESSED),
        )
        .values(body=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PersonInteraction:
    kind: str
    at: datetime
    text: str | None
    value: str | None
    group_id: int | None
    delivery_id: int | None


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A stored webhook request of theirs (``body``: None once purged)."""

    id: int
    received_at: datetime
    body: str | None


@dataclass(frozen=True, slots=True)
class PersonExport:
    """``cns privacy export``: everything stored about one platform user, found by their pseudonym."""

    platform: str
    pseudonym: str
    interactions: tuple[PersonInteraction, ...]
    raw_events: tuple[RawEvent, ...]


@dataclass(frozen=True, slots=True)
class PersonDeleted:
    """``cns privacy delete``: the interactions removed and the raw events purged."""

    interactions: int
    raw_events: int


async def export_person(s: AsyncSession, key: bytes, platform: str, user_id: str) -> PersonExport:
    """Everything stored about one platform user (a data subject's access request)."""
    actor = pseudonym(key, platform, user_id)
    interactions = (
        await s.execute(
            select(Interaction).where(col(Interaction.actor_hash) == actor).order_by(col(Interaction.at))
        )
    ).scalars()
    events = (
        await s.execute(
            select(InboundEvent).where(col(InboundEvent.actor_hash) == actor).order_by(col(InboundEvent.id))
        )
    ).scalars()
    return PersonExport(
        platform,
        actor,
        tuple(
            PersonInteraction(i.kind, i.at, i.text, i.value, i.group_id, i.delivery_id) for i in interactions
        ),
        tuple(
            RawEvent(pk(e.id), e.received_at, e.body.decode("utf-8", "replace") if e.body else None)
            for e in events
        ),
    )


async def delete_person(s: AsyncSession, key: bytes, platform: str, user_id: str) -> PersonDeleted:
    """Erase one platform user's data: their interactions go, their raw payloads are purged. Counts
    drop accordingly; the events themselves stay (without body) so a redelivery is not re-applied."""
    actor = pseudonym(key, platform, user_id)
    removed = await s.execute(delete(Interaction).where(col(Interaction.actor_hash) == actor))
    purged = await s.execute(
        update(InboundEvent).where(col(InboundEvent.actor_hash) == actor).values(body=None, actor_hash=None)
    )
    return PersonDeleted(
        int(removed.rowcount or 0),  # type: ignore[attr-defined]
        int(purged.rowcount or 0),  # type: ignore[attr-defined]
    )
