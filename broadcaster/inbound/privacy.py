"""Citizens' data: pseudonyms, retention of raw payloads, export and deletion on request.

A platform user id is never stored: interactions carry ``HMAC-SHA256(key, platform:user_id)`` (keyed, so
the ids cannot be recovered by hashing every possible id without the key). Raw webhook bodies (which do
contain ids and names) are kept for ``CNS_RAW_RETENTION_DAYS`` to debug and re-process, then purged.

A request (export or delete) is answered within the acting admin's scope: an unscoped admin reaches all
of a person's data; a scoped one only their interactions in groups of units inside the admin's subtree,
and the raw events that led to those interactions alone (an event naming no group of ours, or one that
also touched another subtree, belongs to no single subtree: unscoped admins only).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.users import Actor, Permission, scope_units
from broadcaster.domain.models import ChatGroup, InboundEvent, Interaction, pk
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import EVENT_UNPROCESSED
from broadcaster.domain.timeutil import today as local_today
from broadcaster.units.tree import load_tree


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


@dataclass(frozen=True, slots=True)
class _Reach:
    """A person's data within an admin's scope: None for all of it (an unscoped admin)."""

    interactions: list[int] | None
    events: list[int] | None


async def _reach(s: AsyncSession, actor: Actor, person: str, today: date) -> _Reach:
    actor.require(Permission.MANAGE_USERS)
    inside = await scope_units(s, actor, await load_tree(s, today))
    if inside is None:
        return _Reach(None, None)
    rows = (
        await s.execute(
            select(col(Interaction.id), col(Interaction.event_id), col(ChatGroup.unit_id))
            .outerjoin(ChatGroup, col(ChatGroup.id) == col(Interaction.group_id))
            .where(col(Interaction.actor_hash) == person)
        )
    ).all()
    mine = [pk(i) for i, _, unit in rows if unit in inside]
    events_in = {e for _, e, unit in rows if e is not None and unit in inside}
    events_out = {e for _, e, unit in rows if e is not None and unit not in inside}
    return _Reach(mine, sorted(events_in - events_out))


def _where_in(column: Any, ids: Sequence[int] | None) -> list[Any]:
    """Conditions limiting ``column`` to ``ids`` (none when ``ids`` is None: everything)."""
    return [] if ids is None else [col(column).in_(ids)]


async def export_person(
    s: AsyncSession, actor: Actor, key: bytes, platform: str, user_id: str, *, today: date | None = None
) -> PersonExport:
    """Everything stored about one platform user (a data subject's access request), within ``actor``'s
    scope (see the module's docstring)."""
    person = pseudonym(key, platform, user_id)
    reach = await _reach(s, actor, person, today or local_today())
    interactions = (
        await s.execute(
            select(Interaction)
            .where(col(Interaction.actor_hash) == person, *_where_in(Interaction.id, reach.interactions))
            .order_by(col(Interaction.at))
        )
    ).scalars()
    events = (
        await s.execute(
            select(InboundEvent)
            .where(col(InboundEvent.actor_hash) == person, *_where_in(InboundEvent.id, reach.events))
            .order_by(col(InboundEvent.id))
        )
    ).scalars()
    return PersonExport(
        platform,
        person,
        tuple(
            PersonInteraction(i.kind, i.at, i.text, i.value, i.group_id, i.delivery_id) for i in interactions
        ),
        tuple(
            RawEvent(pk(e.id), e.received_at, e.body.decode("utf-8", "replace") if e.body else None)
            for e in events
        ),
    )


async def delete_person(
    s: AsyncSession, actor: Actor, key: bytes, platform: str, user_id: str, *, today: date | None = None
) -> PersonDeleted:
    """Erase one platform user's data within ``actor``'s scope (see the module's docstring): their
    interactions go, their raw payloads are purged. Counts drop accordingly; the events themselves stay
    (without body) so a redelivery is not re-applied."""
    person = pseudonym(key, platform, user_id)
    reach = await _reach(s, actor, person, today or local_today())
    removed = await s.execute(
        delete(Interaction).where(
            col(Interaction.actor_hash) == person, *_where_in(Interaction.id, reach.interactions)
        )
    )
    purged = await s.execute(
        update(InboundEvent)
        .where(col(InboundEvent.actor_hash) == person, *_where_in(InboundEvent.id, reach.events))
        .values(body=None, actor_hash=None)
    )
    return PersonDeleted(
        int(removed.rowcount or 0),  # type: ignore[attr-defined]
        int(purged.rowcount or 0),  # type: ignore[attr-defined]
    )
