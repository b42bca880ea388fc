"""A past month's report counts each group in the status it had then: the bot removed this month
does not make last month's group unreachable; an archived group still counts where it was active."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from broadcaster.directory.group_events import mark_unreachable, set_status
from broadcaster.domain.models import ChatGroup, GroupStatusChange
from broadcaster.domain.sqltypes import utcnow
from broadcaster.reports import monthly as reports
from broadcaster.reports.monthly import LOCAL
from broadcaster.storage.app import App
from tests.web.world import build


def _months() -> tuple[str, str]:
    now = datetime.now(LOCAL)
    last = now.replace(day=1) - timedelta(days=1)
    return f"{last:%Y-%m}", f"{now:%Y-%m}"


def _unit(report: reports.MonthlyReport | reports.EmptyMonthlyReport, code: str) -> reports.UnitFigures:
    return next(u for u in report.units if u.code == code)


async def test_group_status_in_a_past_month_is_the_status_of_then(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build(app, monkeypatch)
    previous, current = _months()
    async with app.transaction() as s:  # registered three months ago
        await s.execute(update(ChatGroup).values(created_at=utcnow() - timedelta(days=92)))
    async with app.transaction() as s:
        gone = (
            await s.execute(select(ChatGroup).where(col(ChatGroup.external_id) == "-1000000345101"))
        ).scalar_one()
        archived = (
            await s.execute(select(ChatGroup).where(col(ChatGroup.external_id) == "gmf-345102"))
        ).scalar_one()
        assert await mark_unreachable(s, gone, "bot was kicked", utcnow())
        assert set_status(s, archived, "archived", "closed by the commune", utcnow())
        assert not set_status(s, archived, "archived", "again", utcnow())  # no change, no history

    async with app.sessions() as s:
        then = await reports.monthly(s, None, previous)
        now = await reports.monthly(s, None, current)
        history = (await s.execute(select(GroupStatusChange))).scalars().all()
    assert sorted((h.previous, h.status) for h in history) == [
        ("active", "archived"),
        ("active", "unreachable"),
    ]

    village, other = _unit(then, "03451-01").own, _unit(then, "03451-02").own
    assert (village.groups, village.groups_active, village.groups_unreachable) == (2, 2, 0)
    assert (other.groups, other.groups_active) == (1, 1)
    village, other = _unit(now, "03451-01").own, _unit(now, "03451-02").own
    assert (village.groups, village.groups_active, village.groups_unreachable) == (2, 1, 1)
    assert (other.groups, other.groups_active) == (0, 0)  # archived: left out
    # Members of active groups only (none counted here: all unknown, never 0).
    assert _unit(then, "03451-01").own.members_unknown_groups == 2
    assert _unit(now, "03451-01").own.members_unknown_groups == 1
