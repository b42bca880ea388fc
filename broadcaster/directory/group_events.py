"""What happens to a group when the platform says it is gone or moved, whether we learn it from a failed
send (the dispatcher) or from a webhook (the bot was removed, the group became a supergroup)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import Alert, ChatGroup, Delivery, GroupStatusChange, pk
from broadcaster.domain.states import PENDING, DeliveryState, GroupStatus


def set_status(s: AsyncSession, group: ChatGroup, status: str, reason: str, now: datetime) -> bool:
    """Change a group's status and keep the change (reports of past months count the status of then)."""
    if group.status == status:
        return False
    s.add(
        GroupStatusChange(
            group_id=pk(group.id), at=now, previous=group.status, status=status, reason=reason[:200]
        )
    )
    group.status, group.updated_at = status, now
    return True


async def mark_unreachable(s: AsyncSession, group: ChatGroup, reason: str, now: datetime) -> bool:
    """The group can no longer be posted to: mark it, skip what is still pending for it, alert an admin.
    Returns False when it was not active (nothing changed)."""
    if group.status != GroupStatus.ACTIVE:
        return False
    set_status(s, group, GroupStatus.UNREACHABLE, reason, now)
    s.add(
        Alert(
            kind="group_unreachable",
            group_id=group.id,
            message=f"group {group.title!r} ({group.platform} {group.external_id}): {reason}",
        )
    )
    await s.execute(
        update(Delivery)
        .where(col(Delivery.group_id) == group.id, col(Delivery.state).in_(PENDING))
        .values(state=DeliveryState.SKIPPED, last_error="group unreachable", updated_at=now)
    )
    return True


def migrate_group(s: AsyncSession, group: ChatGroup, new_id: str, now: datetime) -> bool:
    """The platform moved the group to a new id (Telegram group -> supergroup). Returns False when the
    group already has that id."""
    if group.external_id == new_id:
        return False
    s.add(
        Alert(
            kind="group_migrated",
            group_id=group.id,
            message=f"group {group.title!r} moved from {group.external_id} to {new_id}",
        )
    )
    group.external_id, group.updated_at = new_id, now
    return True
