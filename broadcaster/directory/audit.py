"""The audit log: every change, who made it, when, and the state before and after (secrets redacted)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import AuditEntry
from broadcaster.domain.results import Json, to_data
from broadcaster.domain.secrets import redact


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    before: Mapping[str, Any] | object = None,
    after: Mapping[str, Any] | object = None,
) -> None:
    """Add an audit entry to the caller's transaction, so it commits (or not) with the change itself.
    ``before`` and ``after`` are dicts or typed results (stored as :func:`to_data` gives them)."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=str(entity_id)[:200],  # an identifier for lookups; the full value goes in before/after
            before=redact(to_data(before)) if before is not None else None,
            after=redact(to_data(after)) if after is not None else None,
        )
    )


async def entries(session: AsyncSession, *, entity: str | None = None, limit: int = 100) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if entity is not None:
        query = query.where(col(AuditEntry.entity) == entity)
    return list((await session.execute(query)).scalars())


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """``cns audit``: one entry (``at`` to the second; ``id`` the entity's identifier)."""

    at: datetime
    actor: str
    action: str
    entity: str
    id: str
    before: Mapping[str, Json] | None
    after: Mapping[str, Json] | None


async def log(session: AsyncSession, *, entity: str | None = None, limit: int = 100) -> list[AuditRecord]:
    """The latest entries, newest first."""
    return [
        AuditRecord(e.at.replace(microsecond=0), e.actor, e.action, e.entity, e.entity_id, e.before, e.after)
        for e in await entries(session, entity=entity, limit=limit)
    ]
