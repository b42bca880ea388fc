"""Campaigns: a series of posts on an RRULE; the scheduler dispatches each occurrence once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broadcaster.domain.errors import InputError, NotFound
from broadcaster.domain.models import Dispatch
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.timeutil import LOCAL_TZ
from broadcaster.storage.app import App
from scheduler.campaigns import add_campaign, list_campaigns, run_due
from tests.dispatch.test_dispatcher import _world
from tests.helpers import actor


async def test_series_on_a_recurrence(app: App, tmp_path: Path) -> None:
    first = await _world(app, tmp_path)  # content 1 approved, dispatch planned
    ed = await actor(app, "ed")
    start = (utcnow().astimezone(LOCAL_TZ) + timedelta(days=1)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    async with app.transaction() as s:
        with pytest.raises(InputError, match="invalid RRULE"):
            await add_campaign(s, ed, "x", posts=[1], rrule="FREQ=SOMETIMES", starts_at=start, scope=["12"])
        with pytest.raises(InputError, match="in the past"):
            await add_campaign(
                s, ed, "x", posts=[1], rrule="FREQ=DAILY", starts_at=start - timedelta(days=3), scope=["12"]
            )
        with pytest.raises(NotFound, match="unknown content 99"):
            await add_campaign(s, ed, "x", posts=[99], rrule="FREQ=DAILY", starts_at=start, scope=["12"])
        campaign = await add_campaign(
            s,
            ed,
            "Tuần lễ số",
            posts=[1, 1],
            rrule="FREQ=DAILY;COUNT=3",
            starts_at=start,
            scope=["03451"],
            quiet_hours="off",
        )
    async with app.transaction() as s:
        listed = await list_campaigns(s)
    assert listed[0].next_occurrence is not None
    assert listed[0].next_occurrence.isoformat() == start.isoformat()
    assert await run_due(app, start - timedelta(minutes=1)) == []
    planned = await run_due(app, start + timedelta(minutes=1))
    assert len(planned) == 1 and planned[0] != first
    assert await run_due(app, start + timedelta(minutes=2)) == []  # each occurrence once
    # the worker was down for two days: only the latest missed occurrence goes out
    later = await run_due(app, start + timedelta(days=2, minutes=1))
    assert len(later) == 1
    async with app.transaction() as s:
        listed = await list_campaigns(s)
        dispatches = (await s.execute(select(func.count()).select_from(Dispatch))).scalar_one()
    assert listed[0].status == "ended" and listed[0].next_post == 2
    assert dispatches == 3  # the first plan plus one per post of the series
    assert campaign.id == listed[0].id
