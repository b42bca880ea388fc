"""Dispatch planning: an approved revision x an audience -> one delivery row per (dispatch, group).

The audience is the union of the scope units' subtrees on the send date (in Asia/Ho_Chi_Minh), kept to
the chosen tiers, then every active group of those units on the chosen platforms. Deliveries are written
with set-based ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: planning the same dispatch again adds
nothing, and a 100,000-group province is planned in a few statements, not row by row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Integer, String, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.accounts import check_platform
from broadcaster.directory.users import Actor, Permission
from broadcaster.domain.errors import InputError, NotFound, PermissionDenied, WorkflowError
from broadcaster.domain.models import (
    Approval,
    ChatGroup,
    ContentItem,
    ContentRevision,
    Delivery,
    Dispatch,
    Unit,
    User,
    pk,
)
from broadcaster.domain.platforms import PLATFORMS
from broadcaster.domain.results import renamed
from broadcaster.domain.sqltypes import UTCDateTime, utcnow
from broadcaster.domain.states import ApprovalDecision, ContentStatus, DeliveryState, GroupStatus
from broadcaster.domain.timeutil import LOCAL_TZ
from broadcaster.storage.db import upsert_insert
from broadcaster.units.tree import UnitTree, load_tree

PAST_TOLERANCE = timedelta(minutes=5)
_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class PlanResult:
    """``cns send``: the dispatch (new or found again), what this call added and what it holds in all
    (``scheduled_at`` in local time; ``as_of``: the day whose tree chose the audience)."""

    dispatch_id: int = field(metadata=renamed("dispatch"))
    created: bool
    added: int
    total: int
    scheduled_at: datetime
    as_of: date
    by_state: Mapping[str, int]
    by_level: Mapping[str, int]
    by_platform: Mapping[str, int]
    # Groups of the audience (its units, on the chosen platforms) that get nothing, by their status
    # (unreachable, migrated, archived): said, so a smaller audience is never a silent one.
    left_out: Mapping[str, int] = field(default_factory=dict)


async def _approved(session: AsyncSession, content_id: int) -> tuple[ContentRevision, Approval]:
    item = await session.get(ContentItem, content_id)
    if item is None:
        raise NotFound(f"unknown content {content_id}")
    if item.status != ContentStatus.APPROVED or item.approved_revision is None:
        raise WorkflowError(f"content {content_id} is {item.status}, not approved: it cannot be sent")
    revision = (
        await session.execute(
            select(ContentRevision).where(
                col(ContentRevision.content_id) == content_id,
                col(ContentRevision.number) == item.approved_revision,
            )
        )
    ).scalar_one()
    approval = (
        await session.execute(
            select(Approval)
            .where(
                col(Approval.revision_id) == revision.id,
                col(Approval.decision) == ApprovalDecision.APPROVED,
                col(Approval.revision_sha256) == revision.sha256,
            )
            .order_by(col(Approval.id).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if approval is None:
        raise WorkflowError(
            f"content {content_id}: revision {revision.number} has no approval matching its hash"
        )
    return revision, approval


async def _approver_scope(session: AsyncSession, approval: Approval) -> tuple[str, int | None]:
    user = await session.get(User, approval.user_id)
    assert user is not None
    return user.name, user.scope_unit_id


def dispatch_key(
    revision_sha: str, scope: Sequence[str], tiers: Sequence[str], platforms: Sequence[str], when: str
) -> str:
    text = "|".join(
        [revision_sha, ",".join(sorted(scope)), ",".join(sorted(tiers)), ",".join(sorted(platforms)), when]
    )
    return hashlib.sha256(text.encode()).hexdigest()


async def plan(
    session: AsyncSession,
    actor: Actor,
    content_id: int,
    scope: Sequence[str],
    *,
    tiers: Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
    at: datetime | None = None,
    again: bool = False,
    waves: Mapping[str, int] | None = None,
    adjust: Callable[[str, datetime], datetime] | None = None,
    adjust_key: str = "",
    quiet_hours: str = "",
) -> PlanResult:
    """Create (or find) the dispatch and plan its deliveries. The caller commits.

    ``waves`` delays tiers by minutes after the send time; ``adjust(level, due)`` moves a due time (the
    scheduler's quiet hours, per tier, named by ``adjust_key`` in the dispatch's identity). Each tier's
    due time becomes its deliveries' ``next_attempt_at``."""
    actor.require(Permission.SEND)
    now = utcnow()
    if at is not None and at < now - PAST_TOLERANCE:
        raise InputError(f"--at {at.isoformat()} is in the past")
    when = at or now
    as_of = when.astimezone(LOCAL_TZ).date()
    revision, approval = await _approved(session, content_id)
    tree = await load_tree(session, as_of)
    codes = sorted({c.strip() for c in scope if c.strip()})
    if not codes:
        raise InputError("--scope needs at least one unit code")
    scope_ids = [tree.get(code).id for code in codes]
    for unit_id in scope_ids:
        actor.require_within(tree, unit_id, "send")
    approver, approver_scope = await _approver_scope(session, approval)
    if approver_scope is not None:
        for unit_id in scope_ids:
            if approver_scope not in tree.nodes or not tree.is_within(unit_id, approver_scope):
                node = tree.nodes[unit_id]
                raise PermissionDenied(
                    f"send: content {content_id} was approved by {approver}, whose scope does not include "
                    f"unit {node.code} ({node.name})"
                )
    levels = _tiers(tree, tiers)
    offsets = dict(waves or {})
    _check_waves(tree, offsets)
    chosen = sorted({check_platform(p) for p in platforms}) if platforms else list(PLATFORMS)
    timing = ",".join(f"{k}={v}" for k, v in sorted(offsets.items())) + (
        f"|{adjust_key}" if adjust_key else ""
    )
    key = dispatch_key(
        revision.sha256,
        codes,
        levels,
        chosen,
        (at.isoformat() if at else as_of.isoformat()) + (f"|{timing}" if timing else ""),
    )
    if again:
        key = hashlib.sha256(f"{key}|{now.isoformat()}".encode()).hexdigest()
    dispatch = (await session.execute(select(Dispatch).where(col(Dispatch.key) == key))).scalar_one_or_none()
    created = dispatch is None
    if dispatch is None:
        dispatch = Dispatch(
            key=key,
            content_id=content_id,
            revision_id=pk(revision.id),
            revision_sha256=revision.sha256,
            approval_id=pk(approval.id),
            created_by=actor.id,
            scope=codes,
            tiers=levels,
            platforms=chosen,
            scheduled_at=when,
            as_of=as_of,
            quiet_hours=quiet_hours,
        )
        session.add(dispatch)
        await session.flush()
    dispatch_id = pk(dispatch.id)
    by_level = _audience(tree, scope_ids, levels)
    added = 0
    left_out: dict[str, int] = {}
    for level, ids in by_level.items():
        due = when + timedelta(minutes=offsets.get(level, 0))
        due = adjust(level, due) if adjust is not None else due
        added += await _insert_deliveries(
            session, dispatch_id, sorted(ids), chosen, now, due if due > now else None
        )
        for status, count in (await _inactive(session, sorted(ids), chosen)).items():
            left_out[status] = left_out.get(status, 0) + count
    by_state, by_tier, by_platform = await _count(session, dispatch_id)
    result = PlanResult(
        dispatch_id,
        created,
        added,
        sum(by_state.values()),
        when.astimezone(LOCAL_TZ),
        as_of,
        by_state,
        by_tier,
        by_platform,
        dict(sorted(left_out.items())),
    )
    await audit.record(
        session,
        actor.name,
        "dispatch.plan",
        "dispatch",
        dispatch_id,
        after={
            "content": content_id,
            "revision": revision.number,
            "sha256": revision.sha256,
            "scope": codes,
            "tiers": levels,
            "platforms": chosen,
            "scheduled_at": when.isoformat(),
            "waves": offsets,
            "timing": adjust_key or None,
            "added": added,
            "total": result.total,
        },
    )
    return result


def _check_waves(tree: UnitTree, waves: Mapping[str, int]) -> None:
    for name in waves:
        if name not in tree.schema:
            raise InputError(
                f"wave for {name!r} does not match the tier schema on {tree.as_of} "
                f"(tiers: {', '.join(tree.schema.names)})"
            )


def _audience(tree: UnitTree, scope_ids: Sequence[int], levels: Sequence[str]) -> dict[str, set[int]]:
    """The units to reach, by level: the scope units' subtrees on the send date, kept to ``levels``."""
    by_level: dict[str, set[int]] = {}
    for uid in scope_ids:
        for node in tree.subtree(uid):
            if node.level in levels:
                by_level.setdefault(node.level, set()).add(node.id)
    return by_level


def _tiers(tree: UnitTree, tiers: Sequence[str] | None) -> list[str]:
    if not tiers:
        return tree.schema.names
    chosen = [t.strip().lower() for t in tiers if t.strip()]
    for name in chosen:
        if name not in tree.schema:
            raise InputError(
                f"tier {name!r} is not in the tier schema on {tree.as_of} "
                f"(tiers: {', '.join(tree.schema.names)})"
            )
    return [n for n in tree.schema.names if n in chosen]


async def _insert_deliveries(
    session: AsyncSession,
    dispatch_id: int,
    unit_ids: list[int],
    platforms: list[str],
    now: datetime,
    due: datetime | None,
) -> int:
    insert_fn = upsert_insert(session)
    added = 0
    stamp = literal(now, UTCDateTime)
    for start in range(0, len(unit_ids), _CHUNK):
        chunk = unit_ids[start : start + _CHUNK]
        source = (
            select(
                literal(dispatch_id, Integer),
                col(ChatGroup.id),
                col(ChatGroup.unit_id),
                col(Unit.level),
                col(ChatGroup.platform),
                col(ChatGroup.mode),
                literal(DeliveryState.PLANNED, String),
                literal(0, Integer),
                literal(due, UTCDateTime),
                stamp,
                stamp,
            )
            .join(Unit, col(Unit.id) == col(ChatGroup.unit_id))
            .where(
                col(ChatGroup.unit_id).in_(chunk),
                col(ChatGroup.status) == GroupStatus.ACTIVE,
                col(ChatGroup.platform).in_(platforms),
            )
        )
        stmt = (
            insert_fn(Delivery)
            .from_select(
                [
                    "dispatch_id",
                    "group_id",
                    "unit_id",
                    "level",
                    "platform",
                    "mode",
                    "state",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                    "updated_at",
                ],
                source,
            )
            .on_conflict_do_nothing(index_elements=["dispatch_id", "group_id"])
        )
        result = await session.execute(stmt)
        added += max(result.rowcount, 0)  # type: ignore[attr-defined]
    return added


async def _inactive(session: AsyncSession, unit_ids: list[int], platforms: list[str]) -> dict[str, int]:
    """Groups of these units on these platforms that are not active, by status."""
    counts: dict[str, int] = {}
    for start in range(0, len(unit_ids), _CHUNK):
        rows = await session.execute(
            select(col(ChatGroup.status), func.count())
            .where(
                col(ChatGroup.unit_id).in_(unit_ids[start : start + _CHUNK]),
                col(ChatGroup.platform).in_(platforms),
                col(ChatGroup.status) != GroupStatus.ACTIVE,
            )
            .group_by(col(ChatGroup.status))
        )
        for status, count in rows.all():
            counts[str(status)] = counts.get(str(status), 0) + int(count)
    return counts


async def _count(session: AsyncSession, dispatch_id: int) -> list[dict[str, int]]:
    """The dispatch's deliveries per state, per level and per platform."""
    counts = []
    for column in (Delivery.state, Delivery.level, Delivery.platform):
        rows = await session.execute(
            select(col(column), func.count())
            .where(col(Delivery.dispatch_id) == dispatch_id)
            .group_by(col(column))
            .order_by(col(column))
        )
        counts.append(dict(rows.all()))
    return counts
