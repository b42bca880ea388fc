"""Alerts: what a person must look at (an account paused, a group or relay admin unreachable, a group
moved, a summary refused), listed and acknowledged.

A scoped user sees the alerts of groups in their subtree; alerts about an account or a dispatch as a
whole are the province's (unscoped users). Acknowledging one records who and when (the audit log too).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.users import Actor, Permission, scope_units
from broadcaster.domain.errors import NotFound, PermissionDenied
from broadcaster.domain.models import Account, Alert, ChatGroup, Unit, pk
from broadcaster.domain.sqltypes import utcnow
from broadcaster.units.tree import load_tree


@dataclass(frozen=True, slots=True)
class AlertInfo:
    id: int
    at: datetime
    kind: str
    message: str
    account: str | None  # the account's name
    group: str | None  # the group's title
    unit_code: str | None  # the group's unit
    unit_name: str | None
    dispatch: int | None
    acknowledged_at: datetime | None

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None


async def _visible(session: AsyncSession, actor: Actor, today: date) -> frozenset[int] | None:
    """The unit ids whose groups' alerts ``actor`` sees (None: every alert)."""
    actor.require(Permission.VIEW)
    return await scope_units(session, actor, await load_tree(session, today))


async def list_alerts(
    session: AsyncSession,
    actor: Actor,
    *,
    today: date,
    open_only: bool = False,
    limit: int = 200,
    alert_id: int | None = None,
) -> list[AlertInfo]:
    """The newest alerts first (``open_only``: those nobody has acknowledged; ``alert_id``: that one)."""
    units = await _visible(session, actor, today)
    query = (
        select(Alert, Account.name, ChatGroup.title, Unit.code, Unit.name)  # type: ignore[call-overload]
        .outerjoin(Account, col(Account.id) == col(Alert.account_id))
        .outerjoin(ChatGroup, col(ChatGroup.id) == col(Alert.group_id))
        .outerjoin(Unit, col(Unit.id) == col(ChatGroup.unit_id))
        .order_by(col(Alert.at).desc(), col(Alert.id).desc())
        .limit(limit)
    )
    if open_only:
        query = query.where(col(Alert.resolved_at).is_(None))
    if alert_id is not None:
        query = query.where(col(Alert.id) == alert_id)
    if units is not None:
        query = query.where(col(ChatGroup.unit_id).in_(units))
    rows = (await session.execute(query)).all()
    return [_info(alert, account, title, code, name) for alert, account, title, code, name in rows]


async def open_count(session: AsyncSession, actor: Actor | None, *, today: date) -> int:
    """How many alerts ``actor`` sees (None: a command run without a user, all) nobody has acknowledged."""
    units = None if actor is None else await _visible(session, actor, today)
    query = select(func.count()).select_from(Alert).where(col(Alert.resolved_at).is_(None))
    if units is not None:
        query = query.join(ChatGroup, col(ChatGroup.id) == col(Alert.group_id)).where(
            col(ChatGroup.unit_id).in_(units)
        )
    return int((await session.execute(query)).scalar_one())


async def acknowledge(session: AsyncSession, actor: Actor, alert_id: int, *, today: date) -> AlertInfo:
    """Mark an alert seen and handled by ``actor`` (once: acknowledging again changes nothing)."""
    found = await list_alerts(session, actor, today=today, alert_id=alert_id)
    if not found:
        if await session.get(Alert, alert_id) is None:
            raise NotFound(f"unknown alert {alert_id}")
        raise PermissionDenied(f"alert {alert_id} is outside user {actor.name}'s scope")
    info = found[0]
    if info.open:
        alert = await session.get(Alert, alert_id)
        assert alert is not None
        alert.resolved_at = utcnow()
        await audit.record(
            session, actor.name, "alert.ack", "alert", alert_id, {"kind": alert.kind}, {"acknowledged": True}
        )
        info = replace(info, acknowledged_at=alert.resolved_at)
    return info


def _info(
    alert: Alert, account: str | None, title: str | None, code: str | None, name: str | None
) -> AlertInfo:
    return AlertInfo(
        pk(alert.id),
        alert.at,
        alert.kind,
        alert.message,
        account,
        title,
        code,
        name,
        alert.dispatch_id,
        alert.resolved_at,
    )
