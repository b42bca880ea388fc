"""Dispatch progress and control: status counts, pause, resume, cancel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.group_events import PENDING
from broadcaster.directory.users import Actor, Permission
from broadcaster.domain.errors import NotFound, WorkflowError
from broadcaster.domain.models import Delivery, Dispatch, pk
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.timeutil import LOCAL_TZ, today
from broadcaster.units.tree import load_tree

DONE_STATES = ("sent", "awaiting_confirmation", "confirmed", "failed", "skipped", "recalled")


async def _dispatch(session: AsyncSession, dispatch_id: int) -> Dispatch:
    dispatch = await session.get(Dispatch, dispatch_id)
    if dispatch is None:
        raise NotFound(f"unknown dispatch {dispatch_id}")
    return dispatch


async def status(session: AsyncSession, dispatch_id: int) -> dict[str, Any]:
    dispatch = await _dispatch(session, dispatch_id)
    out: dict[str, Any] = {
        "dispatch": dispatch_id,
        "status": dispatch.status,
        "content": dispatch.content_id,
        "scheduled_at": dispatch.scheduled_at.astimezone(LOCAL_TZ).isoformat(),
        "scope": dispatch.scope,
    }
    where = col(Delivery.dispatch_id) == dispatch_id
    for key, column in (
        ("by_state", Delivery.state),
        ("by_tier", Delivery.level),
        ("by_platform", Delivery.platform),
    ):
        rows = await session.execute(select(col(column), func.count()).where(where).group_by(col(column)))
        out[key] = dict(sorted(rows.all()))
    cross = await session.execute(
        select(col(Delivery.level), col(Delivery.state), func.count())
        .where(where)
        .group_by(col(Delivery.level), col(Delivery.state))
    )
    tiers: dict[str, dict[str, int]] = {}
    for level, state, n in cross.all():
        tiers.setdefault(level, {})[state] = n
    out["tier_states"] = tiers
    total = sum(out["by_state"].values())
    finished = sum(n for s, n in out["by_state"].items() if s in DONE_STATES)
    out["total"], out["finished"] = total, finished
    held, resumes = (
        await session.execute(
            select(func.count(), func.min(col(Delivery.next_attempt_at))).where(
                where, col(Delivery.state) == "queued", col(Delivery.last_error).like("quiet hours until%")
            )
        )
    ).one()
    out["quiet_hours_held"] = int(held)
    out["quiet_hours_resume"] = resumes.astimezone(LOCAL_TZ).isoformat() if resumes is not None else None
    out["possible_duplicates"] = int(
        (
            await session.execute(
                select(func.coalesce(func.sum(col(Delivery.resent_unknown)), 0)).where(where)
            )
        ).scalar_one()
    )
    return out


async def list_dispatches(session: AsyncSession, limit: int = 20) -> list[dict[str, Any]]:
    rows = (
        (await session.execute(select(Dispatch).order_by(col(Dispatch.id).desc()).limit(limit)))
        .scalars()
        .all()
    )
    return [await status(session, pk(d.id)) for d in rows]


async def _check_scope(session: AsyncSession, actor: Actor, dispatch: Dispatch, what: str) -> None:
    actor.require(Permission.SEND)
    tree = await load_tree(session, dispatch.as_of)
    for code in dispatch.scope:
        if code in tree.by_code:
            actor.require_within(tree, tree.by_code[code].id, what)


async def pause(session: AsyncSession, actor: Actor, dispatch_id: int) -> Dispatch:
    dispatch = await _dispatch(session, dispatch_id)
    await _check_scope(session, actor, dispatch, "pause")
    if dispatch.status not in {"planned", "running"}:
        raise WorkflowError(
            f"dispatch {dispatch_id} is {dispatch.status}; only a planned or running one can pause"
        )
    before, dispatch.status = dispatch.status, "paused"
    await audit.record(
        session,
        actor.name,
        "dispatch.pause",
        "dispatch",
        dispatch_id,
        {"status": before},
        {"status": "paused"},
    )
    return dispatch


async def resume(session: AsyncSession, actor: Actor, dispatch_id: int) -> Dispatch:
    dispatch = await _dispatch(session, dispatch_id)
    await _check_scope(session, actor, dispatch, "resume")
    if dispatch.status != "paused":
        raise WorkflowError(f"dispatch {dispatch_id} is {dispatch.status}, not paused")
    dispatch.status = "running"
    await audit.record(
        session,
        actor.name,
        "dispatch.resume",
        "dispatch",
        dispatch_id,
        {"status": "paused"},
        {"status": "running"},
    )
    return dispatch


async def cancel(session: AsyncSession, actor: Actor, dispatch_id: int) -> int:
    """Stop a dispatch for good: deliveries not yet sent become ``skipped``. Returns how many."""
    dispatch = await _dispatch(session, dispatch_id)
    await _check_scope(session, actor, dispatch, "cancel")
    if dispatch.status in {"done", "cancelled"}:
        raise WorkflowError(
            f"dispatch {dispatch_id} is {dispatch.status}: nothing left to cancel "
            "(use recall to take back what was sent)"
        )
    before, dispatch.status = dispatch.status, "cancelled"
    result = await session.execute(
        update(Delivery)
        .where(col(Delivery.dispatch_id) == dispatch_id, col(Delivery.state).in_(PENDING))
        .values(state="skipped", last_error=f"cancelled by {actor.name}", updated_at=utcnow())
    )
    skipped = int(result.rowcount)  # type: ignore[attr-defined]
    await audit.record(
        session,
        actor.name,
        "dispatch.cancel",
        "dispatch",
        dispatch_id,
        {"status": before},
        {"status": "cancelled", "skipped": skipped, "on": today().isoformat()},
    )
    return skipped
