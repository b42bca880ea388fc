"""The monthly report's rule, checked whole: at every unit of every tier, for every count the report adds
up (``ADDITIVE``), the unit's total is its own figures plus its children's totals; a unit counts itself
once (``own.units`` is 1, ``own.units_covered`` 1 when it has an active group); the rates are those of
the summed counts; ``totals`` is the root's total. On a world with data on every tier (failed and
confirmed posts, an unreachable group, member counts known, known as 0 and unknown, replies, reactions
and clicks), on the tree after the reform and on the one before it (with districts), and on the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from broadcaster.domain.models import ChatGroup, Delivery, Dispatch, Interaction, MemberSnapshot
from broadcaster.domain.results import to_data
from broadcaster.domain.sqltypes import utcnow
from broadcaster.reports import monthly as reports
from broadcaster.storage.app import App
from tests.web.world import PAGE, World, build

RATES = {
    "coverage": ("units_covered", "units"),
    "relay_confirmation_rate": ("posts_confirmed", "relay_sent"),
    "reply_rate": ("replies", "posts_delivered"),
}


def assert_rolls_up(report: dict[str, Any]) -> dict[str, int]:
    """Every rule at every unit of ``report`` (as ``--json`` prints it); returns how many units of each
    level were checked."""
    units = report["units"]
    children: dict[str, list[dict[str, Any]]] = {u["code"]: [] for u in units}
    for unit in units:
        if unit["parent_code"] is not None:
            children[unit["parent_code"]].append(unit)
    levels: dict[str, int] = {}
    for unit in units:
        levels[unit["level"]] = levels.get(unit["level"], 0) + 1
        own, total = unit["own"], unit["total"]
        below = [c["total"] for c in children[unit["code"]]]
        where = f"{unit['level']} {unit['code']}"
        assert set(total) == set(own) == set(reports.ADDITIVE) | set(RATES), where
        assert own["units"] == 1, where  # a unit counts itself, in its own figures
        assert own["units_covered"] == int(own["groups_active"] > 0), where
        for key in reports.ADDITIVE:
            parts = [own[key], *(c[key] for c in below)]
            if key == "members":  # None: no active group's count is known; it adds as nothing
                assert (total[key] or 0) == sum(p or 0 for p in parts), (where, key, total[key], parts)
                if total[key] is None:
                    assert total["members_unknown_groups"] > 0 and not any(parts), (where, parts)
                continue
            assert total[key] == sum(parts), (where, key, total[key], parts)
        for figures in (own, total):
            for rate, (numerator, denominator) in RATES.items():
                d = figures[denominator]
                assert figures[rate] == (round(figures[numerator] / d, 4) if d else None), (where, rate)
    root = next(u for u in units if u["code"] == report["root"]["code"])
    assert report["totals"] == root["total"]
    assert root["total"]["units"] == len(units)  # every unit once, the root included
    assert list(levels) == report["tiers"]  # every tier present was checked (parents before children)
    return levels


async def _enrich(app: App, world: World, shift: timedelta = timedelta(0)) -> None:
    """Outcomes of every kind on the built world's dispatch, then every time moved by ``shift``."""
    deliveries = world.deliveries
    now = utcnow()
    async with app.transaction() as s:
        failed, relayed = deliveries["-1000000345101"].id, deliveries["relay-345103"].id
        await s.execute(
            update(Delivery).where(col(Delivery.id) == failed).values(state="failed", last_error="kicked")
        )
        await s.execute(
            update(Delivery).where(col(Delivery.id) == relayed).values(state="confirmed", confirmed_at=now)
        )
        await s.execute(
            update(ChatGroup).where(col(ChatGroup.external_id) == "mocha-345101").values(status="unreachable")
        )
        # The province's Telegram group counted at 0 (known), its Page never counted (unknown).
        for external, members in (("-1000000003451", 120), ("-1001200000012", 0), ("gmf-345102", 35)):
            group_id = deliveries[external].group_id
            s.add(MemberSnapshot(group_id=group_id, at=now, members=members, source="test"))
        for external, kind, count in (
            ("gmf-345102", "reply", 1),
            ("gmf-345102", "reply", 1),
            ("gmf-345102", "reaction", 3),
            ("gmf-345102", "click", 1),
            ("-1000000003451", "reply", 1),
            ("-1000000003451", "reaction", 1),
            ("-1000000003451", "reaction", -1),
            ("-1001200000012", "click", 2),
            (PAGE, "reply", 1),
            ("relay-345103", "confirmation", 1),
        ):
            d = deliveries[external]
            s.add(
                Interaction(
                    kind=kind,
                    at=now,
                    platform=d.platform,
                    group_id=d.group_id,
                    unit_id=d.unit_id,
                    delivery_id=d.id,
                    dispatch_id=d.dispatch_id,
                    count=count,
                )
            )
    if not shift:
        return
    async with app.transaction() as s:  # in Python: SQLite cannot add an interval to a stored time
        for model, field in (
            (ChatGroup, "created_at"),
            (Dispatch, "scheduled_at"),
            (Interaction, "at"),
            (MemberSnapshot, "at"),
        ):
            for row in (await s.execute(select(model))).scalars():
                setattr(row, field, getattr(row, field) + shift)


async def _report(app: App, month: str) -> dict[str, Any]:
    async with app.sessions() as s:
        data = to_data(await reports.monthly(s, None, month))
    assert isinstance(data, dict)
    return data


async def test_every_count_rolls_up_at_every_unit(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await build(app, monkeypatch)
    await _enrich(app, world)
    async with app.sessions() as s:
        scheduled = (await s.get(Dispatch, world.dispatch_id)).scheduled_at  # type: ignore[union-attr]
    report = await _report(app, scheduled.astimezone(reports.LOCAL).strftime("%Y-%m"))
    levels = assert_rolls_up(report)
    assert levels["province"] == 1 and levels["commune"] == 38 and levels["village"] >= 8
    by_code = {u["code"]: u for u in report["units"]}
    province, commune = by_code["12"], by_code["03451"]
    # The data reached every tier, so the check above compared real sums, not zeros.
    t = report["totals"]
    assert (t["groups"], t["groups_active"], t["groups_unreachable"]) == (7, 6, 1)
    assert (t["posts_planned"], t["posts_delivered"], t["posts_failed"]) == (7, 6, 1)
    assert (t["relay_sent"], t["posts_confirmed"], t["replies"], t["reactions"], t["clicks"]) == (
        1,
        1,
        4,
        3,
        3,
    )
    assert (t["members"], t["members_unknown_groups"]) == (155, 3)
    assert (t["units"], t["units_covered"]) == (len(report["units"]), 5)
    # The province: one group counted at 0, its Page unknown: 0 members known, not "unknown".
    assert (province["own"]["members"], province["own"]["members_unknown_groups"]) == (0, 1)
    assert province["own"]["units"] == 1 and province["own"]["coverage"] == 1.0
    assert commune["total"]["units"] == 1 + sum(1 for u in report["units"] if u["parent_code"] == "03451")
    village = next(u for u in report["units"] if u["parent_code"] == "03451" and not u["own"]["groups"])
    assert (village["own"]["units"], village["own"]["units_covered"], village["own"]["coverage"]) == (
        1,
        0,
        0.0,
    )


async def test_every_count_rolls_up_through_the_districts(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """June 2025: province > districts > communes (the villages of the sample begin in July)."""
    world = await build(app, monkeypatch)
    async with app.sessions() as s:
        scheduled = (await s.get(Dispatch, world.dispatch_id)).scheduled_at  # type: ignore[union-attr]
    await _enrich(app, world, datetime(2025, 6, 15, 10, tzinfo=reports.LOCAL) - scheduled)
    report = await _report(app, "2025-06")
    assert assert_rolls_up(report) == {"province": 1, "district": 8, "commune": 106}
    district = next(u for u in report["units"] if u["code"] == "107")  # Mù Cả's district then
    assert district["own"]["groups"] == 0 and district["total"]["groups"] == 1
    assert district["total"]["replies"] == 1 and district["total"]["members"] == 120
    assert report["totals"]["groups"] == 3  # the villages' groups: their units did not exist yet


def test_the_demo_report_rolls_up(tmp_path: Path) -> None:
    """`cns demo` (its database kept), then `cns report monthly --format json` on it: every unit."""
    env = {**os.environ, "CNS_DATABASE_URL": "sqlite:////nonexistent/never-used.db"}
    demo = subprocess.run(
        [sys.executable, "-m", "broadcaster.cli.main", "--json", "demo", "--keep", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout)
    db = f"sqlite:///{tmp_path / 'demo' / 'cns-demo.db'}"
    month = summary["report"]["month"]
    command = ["report", "monthly", "--month", month, "--format", "json"]
    shown = subprocess.run(
        [sys.executable, "-m", "broadcaster.cli.main", "--db", db, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    levels = assert_rolls_up(report)
    assert levels["province"] == 1 and levels["commune"] == 38 and levels["village"] > 38
    assert report["totals"] == summary["report"]["totals"]
    province = report["units"][0]
    communes = [u["total"]["units"] for u in report["units"] if u["parent_code"] == province["code"]]
    assert province["total"]["units"] == province["own"]["units"] + sum(communes) == len(report["units"])
