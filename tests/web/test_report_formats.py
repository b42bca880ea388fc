"""`cns report monthly` in every format, `cns replies`, and the purge of raw payloads."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select, update
from sqlmodel import col

from broadcaster.domain.models import Dispatch, InboundEvent, Interaction
from broadcaster.domain.sqltypes import utcnow
from broadcaster.inbound.privacy import purge_raw
from broadcaster.reports.monthly import LOCAL
from broadcaster.storage.app import App
from tests.web.world import build


def cns(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broadcaster.cli.main", "--db", app.settings.database_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_report_formats_agree(app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    world = await build(app, monkeypatch)
    async with app.transaction() as s:
        d = world.deliveries["gmf-345102"]
        s.add(
            Interaction(
                kind="reply",
                at=utcnow(),
                platform="zalo",
                group_id=d.group_id,
                unit_id=d.unit_id,
                delivery_id=d.id,
                dispatch_id=d.dispatch_id,
                text="Bản em nhận rồi",
            )
        )
        scheduled = (await s.get(Dispatch, world.dispatch_id)).scheduled_at  # type: ignore[union-attr]
    month = scheduled.astimezone(LOCAL).strftime("%Y-%m")
    data = json.loads(cns(app, "report", "monthly", "--month", month, "--format", "json").stdout)
    rows = list(
        csv.DictReader(io.StringIO(cns(app, "report", "monthly", "--month", month, "--format", "csv").stdout))
    )
    assert len(rows) == len(data["units"]) and rows[0]["code"] == "12"
    assert int(rows[0]["replies"]) == data["totals"]["replies"] == 1
    assert rows[0]["members"] == ""  # unknown stays empty, not 0
    out = tmp_path / "report.xlsx"
    done = cns(app, "report", "monthly", "--month", month, "--format", "xlsx", "-o", str(out))
    assert done.returncode == 0, done.stderr
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["Tổng hợp", "Tỉnh", "Xã", "Thôn-Bản"]
    communes = book["Xã"]
    assert communes.max_row == 1 + sum(1 for u in data["units"] if u["level"] == "commune")
    assert len(communes._charts) == 1
    table = cns(app, "report", "monthly", "--month", month)
    assert table.returncode == 0 and "replies 1" in table.stdout
    assert cns(app, "report", "monthly", "--month", "2025-13").returncode == 1
    assert cns(app, "--as", "xa", "report", "monthly", "--month", month, "--unit", "12").returncode == 1
    log = cns(app, "--json", "--as", "xa", "replies")
    assert log.returncode == 0 and [r["text"] for r in json.loads(log.stdout)] == ["Bản em nhận rồi"]


async def test_raw_payloads_are_purged_after_retention(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    await build(app, monkeypatch)
    async with app.transaction() as s:
        for key, status in (("old-done", "done"), ("old-pending", "pending"), ("new-done", "done")):
            s.add(InboundEvent(account_id=1, platform="telegram", key=key, status=status, body=b"{}"))
    async with app.transaction() as s:
        await s.execute(
            update(InboundEvent)
            .where(col(InboundEvent.key).like("old-%"))
            .values(received_at=utcnow() - timedelta(days=31))
        )
        assert await purge_raw(s, 30) == 1
    async with app.sessions() as s:
        bodies = dict((await s.execute(select(col(InboundEvent.key), col(InboundEvent.body)))).all())
    assert bodies == {
        "old-done": None,
        "old-pending": b"{}",
        "new-done": b"{}",
    }  # pending kept until processed
