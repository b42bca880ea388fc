"""The monthly report: reach and engagement per unit, rolled up tier by tier on the month's own tree.

The tree is the one valid on the month's last day, so June 2025 rolls villages up through communes and
districts to the province, and July 2025 (after the reform) through communes straight to the province.
Each unit's ``total`` is its ``own`` figures (its own groups) plus the totals of its children. Member
counts are the latest snapshot before the month ends; a group never counted is *unknown* (reported as
``members_unknown_groups``), never 0. Rates are ``None`` when their denominator is 0.
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
from broadcaster.units.tree import UnitTree, load_tree

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
DELIVERED = ("sent", "awaiting_confirmation", "confirmed", "recalled")


def month_bounds(month: str) -> tuple[date, datetime, datetime]:
    """``YYYY-MM`` -> (its last day, its start and end as aware UTC instants, local time)."""
    try:
        year, number = (int(x) for x in month.split("-"))
        first = date(year, number, 1)
    except ValueError:
        raise InputError(f"invalid month {month!r}: expected YYYY-MM") from None
    last = date(year, number, calendar.monthrange(year, number)[1])
    following = date(year + number // 12, number % 12 + 1, 1)
    start = datetime.combine(first, time(), LOCAL)
    end = datetime.combine(following, time(), LOCAL)
    return last, start, end


@dataclass(slots=True)
class Figures:
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    def add(self, other: Figures) -> None:
        for key in COUNTS:
            self.values[key] += other.values[key]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.values)
        v = self.values
        out["coverage"] = round(v["units_covered"] / v["units"], 4) if v["units"] else None
        out["relay_confirmation_rate"] = (
            round(v["posts_confirmed"] / v["relay_sent"], 4) if v["relay_sent"] else None
        )
        out["reply_rate"] = round(v["replies"] / v["posts_delivered"], 4) if v["posts_delivered"] else None
        if v["members_unknown_groups"] and not v["members"]:
            out["members"] = None  # nothing known: unknown, not 0
        return out


async def _by_unit(s: AsyncSession, query: Any) -> dict[int, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in (await s.execute(query)).all()}


async def monthly(
    s: AsyncSession, actor: Actor | None, month: str, unit_code: str | None = None
) -> dict[str, Any]:
    last, start, end = month_bounds(month)
    tree = await load_tree(s, last)
    if not len(tree):
        return {
            "month": month,
            "as_of": last.isoformat(),
            "units": [],
            "totals": Figures().to_dict(),
            "tiers": [],
        }
    root = tree.get(unit_code) if unit_code else _root(tree, actor)
    if actor is not None:
        actor.require_within(tree, root.id, f"see the report of {root.name}")
    own = await _own_figures(s, start, end)
    totals: dict[int, Figures] = {}
    order = list(tree.subtree(root.id))
    for node in reversed(order):  # children before parents
        figures = Figures()
        mine = own.get(node.id)
        if mine is not None:
            figures.add(mine)
        figures.values["units"] = 1
        figures.values["units_covered"] = 1 if mine is not None and mine.values["groups_active"] else 0
        for child in node.children:
            if child in totals:
                figures.add(totals[child])
        totals[node.id] = figures
    units = []
    for node in order:
        parent = tree.nodes.get(node.parent_id) if node.parent_id is not None else None
        units.append(
            {
                "code": node.code,
                "name": node.name,
                "level": node.level,
                "parent_code": parent.code if parent else None,
                "own": (own.get(node.id) or Figures()).to_dict(),
                "total": totals[node.id].to_dict(),
            }
        )
    present = {n.level for n in order}
    return {
        "month": month,
        "as_of": last.isoformat(),
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "root": {"code": root.code, "name": root.name, "level": root.level},
        "tiers": [lvl for lvl in tree.schema.names if lvl in present],
        "units": units,
        "totals": totals[root.id].to_dict(),
    }


def _root(tree: UnitTree, actor: Actor | None) -> Any:
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
        v["groups_active"] += status == "active"
        v["groups_unreachable"] += status == "unreachable"
    await _members(s, end, [(g, u) for g, u, status in groups if status == "active"], figures)
    posts = await _by_unit(
        s,
        select(
            col(Delivery.unit_id),
            func.count(),
            func.sum(case((col(Delivery.state).in_(DELIVERED), 1), else_=0)),
            func.sum(case((col(Delivery.state) == "failed", 1), else_=0)),
            func.sum(
                case((and_(col(Delivery.mode) == "relay", col(Delivery.state).in_(DELIVERED)), 1), else_=0)
            ),
            func.sum(case((col(Delivery.state) == "confirmed", 1), else_=0)),
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
        if status != "archived":
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
        else:
            v["members_unknown_groups"] += 1


def rows_for_tier(report: dict[str, Any], level: str) -> Iterable[dict[str, Any]]:
    return (u for u in report["units"] if u["level"] == level)
