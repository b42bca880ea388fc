"""Citizens' data: pseudonyms, retention of raw payloads, export and deletion on request.

A platform user id is never stored: interactions carry ``HMAC-SHA256(key, platform:user_id)`` (keyed, so
the ids cannot be recovered by hashing every possible id without the key). Raw webhook bodies (which do
contain ids and names) are kept for ``CNS_RAW_RETENTION_DAYS`` to debug and re-process, then purged.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import InboundEvent, Interaction
from broadcaster.domain.sqltypes import utcnow


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
            col(InboundEvent.status).not_in(["pending", "working"]),
        )
        .values(body=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def export_person(s: AsyncSession, key: bytes, platform: str, user_id: str) -> dict[str, Any]:
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
    return {
        "platform": platform,
        "pseudonym": actor,
        "interactions": [
            {
                "kind": i.kind,
                "at": i.at.isoformat(),
                "text": i.text,
                "value": i.value,
                "group_id": i.group_id,
                "delivery_id": i.delivery_id,
            }
            for i in interactions
        ],
        "raw_events": [
            {
                "id": e.id,
                "received_at": e.received_at.isoformat(),
                "body": e.body.decode("utf-8", "replace") if e.body else None,
            }
            for e in events
        ],
    }


async def delete_person(s: AsyncSession, key: bytes, platform: str, user_id: str) -> dict[str, int]:
    """Erase one platform user's data: their interactions go, their raw payloads are purged. Counts
    drop accordingly; the events themselves stay (without body) so a redelivery is not re-applied."""
    actor = pseudonym(key, platform, user_id)
    removed = await s.execute(delete(Interaction).where(col(Interaction.actor_hash) == actor))
    purged = await s.execute(
        update(InboundEvent).where(col(InboundEvent.actor_hash) == actor).values(body=None, actor_hash=None)
    )
    return {
        "interactions": int(removed.rowcount or 0),  # type: ignore[attr-defined]
        "raw_events": int(purged.rowcount or 0),  # type: ignore[attr-defined]
    }
