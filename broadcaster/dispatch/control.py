"""Dispatch progress and control: status counts, pause, resume, cancel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.users import Actor, Permission
from broadcaster.domain.errors import NotFound, WorkflowError
from broadcaster.domain.models import Delivery, Dispatch, pk
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import (
    DISPATCH_ENDED,
    DISPATCH_SENDING,
    FINAL,
    PENDING,
    DeliveryState,
    DispatchStatus,
)
from broadcaster.domain.timeutil import LOCAL_TZ, today
from broadcaster.units.tree import load_tree


async def _dispatch(session: AsyncSession, dispatch_id: int) -> Dispatch:
    dispatch = await session.get(Dispatch, dispatch_id)
    if dispatch is None:
        raise NotFound(f"unknown dispatch {dispatch_id}")
    return dispatch


@dataclass(frozen=True, slots=True)
class DispatchProgress:
    """``cns status``, ``GET /api/dispatches[/{id}]``: a dispatch's deliveries counted per state, tier
    and platform (times in local time; ``finished``: in a final state)."""

    dispatch: int
    status: str
    content: int
    scheduled_at: datetime
    scope: tuple[str, ...]
    by_state: Mapping[str, int]
    by_tier: Mapping[str, int]
    by_platform: Mapping[str, int]
    tier_states: Mapping[str, Mapping[str, int]]
    total: int
    finished: int
    quiet_hours_held: int  # queued until their tier's quiet hours end
    quiet_hours_resume: datetime | None  # the earliest of those ends
    possible_duplicates: int  # sent again after a crash left them unknown


@dataclass(frozen=True, slots=True)
class ControlResult:
    """``cns pause|resume``: the dispatch's status now."""

    dispatch: int
    status: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """``cns cancel``: the deliveries not sent are skipped."""

    dispatch: int
    status: str
    skipped: int


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """``GET /api/dispatches/{id}/deliveries``: one delivery. ``sent_at``/``confirmed_at`` keep the API's
    format since its first version, ``str(datetime)`` (a space, not a ``T``, between date and time)."""

    id: int
    group: int
    unit: int
    level: str
    platform: str
    mode: str
    state: str
    attempts: int
    last_error: str | None
    sent_at: str | None
    confirmed_at: str | None


async def status(session: AsyncSession, dispatch_id: int) -> DispatchProgress:
    dispatch = await _dispatch(session, dispatch_id)
    where = col(Delivery.dispatch_id) == dispatch_id
    counts: list[dict[str, int]] = []
    for column in (Delivery.state, Delivery.level, Delivery.platform):
        rows = await session.execute(select(col(column), func.count()).where(where).group_by(col(column)))
        counts.append(dict(sorted(rows.all())))
    by_state, by_tier, by_platform = counts
    cross = await session.execute(
        select(col(Delivery.level), col(Delivery.state), func.count())
        .where(where)
        .group_by(col(Delivery.level), col(Delivery.state))
    )
    tiers: dict[str, dict[str, int]] = {}
    for level, state, n in cross.all():
        tiers.setdefault(level, {})[state] = n
    held, resumes = (
        await session.execute(
            select(func.count(), func.min(col(Delivery.next_attempt_at))).where(
                where,
                col(Delivery.state) == DeliveryState.QUEUED,
                col(Delivery.last_error).like("quiet hours until%"),
            )
        )
    ).one()
    duplicates = (
        await session.execute(select(func.coalesce(func.sum(col(Delivery.resent_unknown)), 0)).where(where))
    ).scalar_one()
    return DispatchProgress(
        dispatch_id,
        dispatch.status,
        dispatch.content_id,
        dispatch.scheduled_at.astimezone(LOCAL_TZ),
        tuple(dispatch.scope),
        by_state,
        by_tier,
        by_platform,
        tiers,
        sum(by_state.values()),
        sum(n for s, n in by_state.items() if s in FINAL),
        int(held),
        resumes.astimezone(LOCAL_TZ) if resumes is not None else None,
        int(duplicates),
    )


async def list_dispatches(session: AsyncSession, limit: int = 20) -> list[DispatchProgress]:
    rows = (
        (await session.execute(select(Dispatch).order_by(col(Dispatch.id).desc()).limit(limit)))
        .scalars()
        .all()
    )
    return [await status(session, pk(d.id)) for d in rows]


async def list_deliveries(
    session: AsyncSession,
    dispatch_id: int,
    *,
    state: str | None = None,
    after: int | None = None,
    limit: int = 500,
) -> list[DeliveryRow]:
    """A dispatch's deliveries by id (``after``: from the next id on), optionally in one state."""
    query = select(Delivery).where(col(Delivery.dispatch_id) == dispatch_id).order_by(col(Delivery.id))
    if state:
        query = query.where(col(Delivery.state) == state)
    if after is not None:
        query = query.where(col(Delivery.id) > after)
    return [
        DeliveryRow(
            pk(d.id),
            d.group_id,
            d.unit_id,
            d.level,
            d.platform,
            d.mode,
            d.state,
            d.attempts,
            d.last_error,
            None if d.sent_at is None else str(d.sent_at),
            None if d.confirmed_at is None else str(d.confirmed_at),
        )
        for d in (await session.execute(query.limit(limit))).scalars()
    ]


async def _check_scope(session: AsyncSession, actor: Actor, dispatch: Dispatch, what: str) -> None:
    actor.require(Permission.SEND)
    tree = await load_tree(session, dispatch.as_of)
    for code in dispatch.scope:
        if code in tree.by_code:
            actor.require_within(tree, tree.by_code[code].id, what)


async def pause(session: AsyncSession, actor: Actor, dispatch_id: int) -> Dispatch:
    dispatch = await _dispatch(session, dispatch_id)
    await _check_scope(session, actor, dispatch, "pause")
    if dispatch.status not in DISPATCH_SENDING:
        raise WorkflowError(
            f"dispatch {dispatch_id} is {dispatch.status}; only a planned or running one can pause"
        )
    before, dispatch.status = dispatch.status, DispatchStatus.PAUSED
    await audit.record(
        session,
        actor.name,
        "dispatch.pause",
        "dispatch",
        dispatch_id,
        {"status": before},
        {"status": DispatchStatus.PAUSED},
    )
    return dispatch


async def resume(session: AsyncSession, actor: Actor, dispatch_id: int) -> Dispatch:
    dispatch = await _dispatch(session, dispatch_id)
    await _check_scope(session, actor, dispatch, "resume")
    if dispatch.status != DispatchStatus.PAUSED:
        raise WorkflowError(f"dispatch {dispatch_id} is {dispatch.status}, not paused")
    dispatch.status = DispatchStatus.RUNNING
    await audit.record(
        session,
        actor.name,
        "dispatch.resume",
        "dispatch",
        dispatch_id,
        {"status": DispatchStatus.PAUSED},
        {"status": DispatchStatus.RUNNING},
    )
    return dispatch


async def cancel(session: AsyncSession, actor: Actor, dispatch_id: int) -> int:
    """Stop a dispatch for good: deliveries not yet sent become ``skipped``. Returns how many."""
    dispatch = await _dispatch(session, dispatch_id)
    await _check_scope(session, actor, dispatch, "cancel")
    if dispatch.status in DISPATCH_ENDED:
        raise WorkflowError(
            f"dispatch {dispatch_id} is {dispatch.status}: nothing left to cancel "
            "(use recall to take back what was sent)"
        )
    before, dispatch.status = dispatch.status, DispatchStatus.CANCELLED
    result = await session.execute(
        update(Delivery)
        .where(col(Delivery.dispatch_id) == dispatch_id, col(Delivery.state).in_(PENDING))
        .values(state=DeliveryState.SKIPPED, last_error=f"cancelled by {actor.name}", updated_at=utcnow())
    )
    skipped = int(result.rowcount)  # type: ignore[attr-defined]
    await audit.record(
        session,
        actor.name,
        "dispatch.cancel",
        "dispatch",
        dispatch_id,
        {"status": before},
        {"status": DispatchStatus.CANCELLED, "skipped": skipped, "on": today().isoformat()},
    )
    return skipped
