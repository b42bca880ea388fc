"""The audit log: every change, who made it, when, and the state before and after (secrets redacted)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import AuditEntry
from broadcaster.domain.secrets import redact


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry to the caller's transaction, so it commits (or not) with the change itself."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=str(entity_id)[:200],  # an identifier for lookups; the full value goes in before/after
            before=redact(before) if before is not None else None,
            after=redact(after) if after is not None else None,
        )
    )


async def entries(session: AsyncSession, *, entity: str | None = None, limit: int = 100) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if entity is not None:
        query = query.where(col(AuditEntry.entity) == entity)
    return list((await session.execute(query)).scalars())
