"""The monthly report: reach and engagement per unit, rolled up tier by tier on the month's own tree.

The tree is the one valid on the month's last day, so June 2025 rolls villages up through communes and
districts to the province, and July 2025 (after the reform) through communes straight to the province.
Each unit's ``total`` is its ``own`` figures (its own groups) plus the totals of its children, for every
count (``ADDITIVE``); the rates are then computed from those sums, never added. A unit counts itself in
its own figures: ``units`` is 1 and ``units_covered`` is 1 when it has an active group of its own, so
its total ``units`` is the number of units in its subtree, itself included. Member counts are the latest
snapshot before the month ends; a group never counted is *unknown* (reported as
``members_unknown_groups``), never 0: ``members`` is None when no active group's count is known.
Rates are ``None`` when their denominator is 0.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.users import Actor
from broadcaster.domain.errors import InputError
from broadcaster.domain.models import (
    ChatGroup,
    Delivery,
    Dispatch,
    GroupStatusChange,
    Interaction,
    MemberSnapshot,
    pk,
)
from broadcaster.domain.results import renamed
from broadcaster.domain.states import DELIVERED_OR_RECALLED, DeliveryState, GroupMode, GroupStatus
from broadcaster.domain.timeutil import check_year
from broadcaster.units.tree import UnitNode, UnitRef, UnitTree, load_tree

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
COUNTS = (
    "groups",
    "groups_active",
    "groups_unreachable",
    "units",
    "units_covered",
    "members",
    "members_unknown_groups",
    "posts_planned",
    "posts_delivered",
    "posts_failed",
    "relay_sent",
    "posts_confirmed",
    "replies",
    "reactions",
    "clicks",
)
# What the roll-up adds and ``Totals`` shows: every count (``members`` None standing for no count known).
ADDITIVE = COUNTS
# Counted but not shown: how many active groups' member counts are known (``members`` is None when none is).
_COUNTED = (*COUNTS, "members_known_groups")


def month_bounds(month: str) -> tuple[date, datetime, datetime]:
    """``YYYY-MM`` -> (its last day, its start and end as aware UTC instants, local time)."""
    try:
        year, number = (int(x) for x in month.split("-"))
        first = date(year, number, 1)
    except ValueError:
        raise InputError(f"invalid month {month!r}: expected YYYY-MM") from None
    check_year(year, month)
    last = date(year, number, calendar.monthrange(year, number)[1])
    following = date(year + number // 12, number % 12 + 1, 1)
    start = datetime.combine(first, time(), LOCAL)
    end = datetime.combine(following, time(), LOCAL)
    return last, start, end


@dataclass(frozen=True, slots=True)
class Totals:
    """One unit's figures for the month (its own groups, or rolled up with its subtree). ``members`` is
    None when no group's count is known; rates are None when their denominator is 0."""

    groups: int
    groups_active: int
    groups_unreachable: int
    units: int
    units_covered: int
    members: int | None
    members_unknown_groups: int
    posts_planned: int
    posts_delivered: int
    posts_failed: int
    relay_sent: int
    posts_confirmed: int
    replies: int
    reactions: int
    clicks: int
    coverage: float | None
    relay_confirmation_rate: float | None
    reply_rate: float | None


@dataclass(slots=True)
class Figures:
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTED, 0))

    def add(self, other: Figures) -> None:
        for key in _COUNTED:
            self.values[key] += other.values[key]

    def totals(self) -> Totals:
        v = self.values
        return Totals(
            groups=v["groups"],
            groups_active=v["groups_active"],
            groups_unreachable=v["groups_unreachable"],
            units=v["units"],
            units_covered=v["units_covered"],
            # no active group's count known: unknown, not 0 (no active group at all: 0)
            members=None if v["members_unknown_groups"] and not v["members_known_groups"] else v["members"],
            members_unknown_groups=v["members_unknown_groups"],
            posts_planned=v["posts_planned"],
            posts_delivered=v["posts_delivered"],
            posts_failed=v["posts_failed"],
            relay_sent=v["relay_sent"],
            posts_confirmed=v["posts_confirmed"],
            replies=v["replies"],
            reactions=v["reactions"],
            clicks=v["clicks"],
            coverage=round(v["units_covered"] / v["units"], 4) if v["units"] else None,
            relay_confirmation_rate=(
                round(v["posts_confirmed"] / v["relay_sent"], 4) if v["relay_sent"] else None
            ),
            reply_rate=round(v["replies"] / v["posts_delivered"], 4) if v["posts_delivered"] else None,
        )


@dataclass(frozen=True, slots=True)
class UnitFigures:
    """A unit of the report: its own groups' figures and its subtree's total."""

    code: str
    name: str
    level: str
    parent_code: str | None
    own: Totals
    total: Totals


@dataclass(frozen=True, slots=True)
class Period:
    """The month as local-time instants: ``from`` (inclusive) and ``to`` (exclusive)."""

    start: datetime = field(metadata=renamed("from"))
    end: datetime = field(metadata=renamed("to"))


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    """``cns report monthly``, ``GET /api/reports/monthly``: every unit of the subtree of ``root`` on
    the tree of the month's last day (``as_of``), parents before children; ``totals`` is the root's."""

    month: str
    as_of: date
    period: Period
    root: UnitRef
    tiers: tuple[str, ...]  # the levels present, top first
    units: tuple[UnitFigures, ...]
    totals: Totals

    def rows_for_tier(self, level: str) -> Iterable[UnitFigures]:
        return (u for u in self.units if u.level == level)


@dataclass(frozen=True, slots=True)
class EmptyMonthlyReport:
    """The report of a month before any unit existed (its keys in the order that answer has always had)."""

    month: str
    as_of: date
    units: tuple[UnitFigures, ...]  # always empty
    totals: Totals
    tiers: tuple[str, ...]  # always empty

    def rows_for_tier(self, level: str) -> Iterable[UnitFigures]:
        return ()


async def _by_unit(s: AsyncSession, query: Any) -> dict[int, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in (await s.execute(query)).all()}


async def monthly(
    s: AsyncSession, actor: Actor | None, month: str, unit_code: str | None = None
) -> MonthlyReport | EmptyMonthlyReport:
    last, start, end = month_bounds(month)
    tree = await load_tree(s, last)
    if not len(tree):
        return EmptyMonthlyReport(month, last, (), Figures().totals(), ())
    root = tree.get(unit_code) if unit_code else _root(tree, actor)
    if actor is not None:
        actor.require_within(tree, root.id, f"see the report of {root.name}")
    own = await _own_figures(s, start, end)
    totals: dict[int, Figures] = {}
    order = list(tree.subtree(root.id))
    for node in reversed(order):  # children before parents
        mine = own.setdefault(node.id, Figures())
        # a unit counts itself in its own figures, so once in its total and in each total above it
        mine.values["units"] = 1
        mine.values["units_covered"] = 1 if mine.values["groups_active"] else 0
        figures = Figures()
        figures.add(mine)
        for child in node.children:
            if child in totals:
                figures.add(totals[child])
        totals[node.id] = figures
    units = []
    for node in order:
        parent = tree.nodes.get(node.parent_id) if node.parent_id is not None else None
        units.append(
            UnitFigures(
                node.code,
                node.name,
                node.level,
                parent.code if parent else None,
                own[node.id].totals(),
                totals[node.id].totals(),
            )
        )
    present = {n.level for n in order}
    return MonthlyReport(
        month,
        last,
        Period(start, end),
        UnitRef.of(root),
        tuple(lvl for lvl in tree.schema.names if lvl in present),
        tuple(units),
        totals[root.id].totals(),
    )


def _root(tree: UnitTree, actor: Actor | None) -> UnitNode:
    if actor is not None and actor.scope_unit_id is not None and actor.scope_unit_id in tree.nodes:
        return tree.nodes[actor.scope_unit_id]
    roots = [n for n in tree.nodes.values() if n.parent_id is None or n.parent_id not in tree.nodes]
    return sorted(roots, key=lambda n: n.code)[0]


async def _own_figures(s: AsyncSession, start: datetime, end: datetime) -> dict[int, Figures]:
    """Each unit's own figures for the period (grouped by the unit its groups belong to)."""
    figures: dict[int, Figures] = defaultdict(Figures)
    groups = await groups_at(s, end)
    for _, unit_id, status in groups:
        v = figures[unit_id].values
        v["groups"] += 1
        v["groups_active"] += status == GroupStatus.ACTIVE
        v["groups_unreachable"] += status == GroupStatus.UNREACHABLE
    await _members(s, end, [(g, u) for g, u, status in groups if status == GroupStatus.ACTIVE], figures)
    posts = await _by_unit(
        s,
        select(
            col(Delivery.unit_id),
            func.count(),
            func.sum(case((col(Delivery.state).in_(DELIVERED_OR_RECALLED), 1), else_=0)),
            func.sum(case((col(Delivery.state) == DeliveryState.FAILED, 1), else_=0)),
            func.sum(
                case(
                    (
                        and_(
                            col(Delivery.mode) == GroupMode.RELAY,
                            col(Delivery.state).in_(DELIVERED_OR_RECALLED),
                        ),
                        1,
                    ),
                    else_=0,
                )
            ),
            func.sum(case((col(Delivery.state) == DeliveryState.CONFIRMED, 1), else_=0)),
        )
        .join(Dispatch, col(Dispatch.id) == col(Delivery.dispatch_id))
        .where(col(Dispatch.scheduled_at) >= start, col(Dispatch.scheduled_at) < end)
        .group_by(col(Delivery.unit_id)),
    )
    for unit_id, (planned, delivered, failed, relay, confirmed) in posts.items():
        v = figures[unit_id].values
        v["posts_planned"], v["posts_delivered"], v["posts_failed"] = (
            int(planned),
            int(delivered or 0),
            int(failed or 0),
        )
        v["relay_sent"], v["posts_confirmed"] = int(relay or 0), int(confirmed or 0)
    interactions = await _by_unit(
        s,
        select(
            col(Interaction.unit_id),
            func.sum(case((col(Interaction.kind) == "reply", col(Interaction.count)), else_=0)),
            func.sum(case((col(Interaction.kind) == "reaction", col(Interaction.count)), else_=0)),
            func.sum(case((col(Interaction.kind) == "click", col(Interaction.count)), else_=0)),
        )
        .where(col(Interaction.at) >= start, col(Interaction.at) < end, col(Interaction.unit_id).is_not(None))
        .group_by(col(Interaction.unit_id)),
    )
    for unit_id, (replies, reactions, clicks) in interactions.items():
        v = figures[unit_id].values
        v["replies"], v["reactions"], v["clicks"] = (
            int(replies or 0),
            max(int(reactions or 0), 0),
            int(clicks or 0),
        )
    return figures


async def groups_at(s: AsyncSession, end: datetime) -> list[tuple[int, int, str]]:
    """(group, unit, status) of the groups registered before ``end``, in the status they had at ``end``
    (the last change before it; before the first change after it, that change's ``previous``; without
    changes, today's). Archived groups are left out."""
    changes: dict[int, list[tuple[datetime, str, str]]] = defaultdict(list)
    for group_id, at, previous, status in (
        await s.execute(
            select(
                col(GroupStatusChange.group_id),
                col(GroupStatusChange.at),
                col(GroupStatusChange.previous),
                col(GroupStatusChange.status),
            ).order_by(col(GroupStatusChange.at), col(GroupStatusChange.id))
        )
    ).all():
        changes[group_id].append((at, previous, status))
    out = []
    rows = await s.execute(
        select(col(ChatGroup.id), col(ChatGroup.unit_id), col(ChatGroup.status)).where(
            col(ChatGroup.created_at) < end
        )
    )
    for gid, unit_id, current in rows.all():
        status = current
        history = changes.get(pk(gid))
        if history:
            before = [c for c in history if c[0] < end]
            status = before[-1][2] if before else history[0][1]
        if status != GroupStatus.ARCHIVED:
            out.append((pk(gid), int(unit_id), str(status)))
    return out


async def _members(
    s: AsyncSession, end: datetime, active: list[tuple[int, int]], figures: dict[int, Figures]
) -> None:
    latest = (
        select(col(MemberSnapshot.group_id), func.max(col(MemberSnapshot.id)).label("last"))
        .where(col(MemberSnapshot.at) < end)
        .group_by(col(MemberSnapshot.group_id))
        .subquery()
    )
    known = {
        row[0]: row[1]
        for row in (
            await s.execute(
                select(col(MemberSnapshot.group_id), col(MemberSnapshot.members)).join(
                    latest, latest.c.last == col(MemberSnapshot.id)
                )
            )
        ).all()
    }
    for group_id, unit_id in active:
        v = figures[unit_id].values
        if group_id in known:
            v["members"] += int(known[group_id])
            v["members_known_groups"] += 1
        else:
            v["members_unknown_groups"] += 1
