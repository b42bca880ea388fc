"""Alerts are shown, scoped and acknowledged: the service, the CLI (`cns alerts`, `cns status`) and the API."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from broadcaster.directory import alerts, audit
from broadcaster.domain.errors import PermissionDenied
from broadcaster.storage.app import App
from tests.dispatch.test_dispatcher import _dispatcher, _memories, _world
from tests.helpers import TODAY, actor, add_users, cns_argv


async def _one_group_gone(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    platforms = _memories()
    platforms["webhook"].gone.add("m-2")  # the Tó Khò bridge group (unit 03451-02) is gone
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    await add_users(app, [("doan-ket", "viewer", "03388"), ("mu-ca", "viewer", "03451")])


async def test_alerts_are_listed_by_scope_and_acknowledged(app: App, tmp_path: Path) -> None:
    await _one_group_gone(app, tmp_path)
    async with app.transaction() as s:
        admin = await actor(app, "admin")
        (alert,) = await alerts.list_alerts(s, admin, today=TODAY, open_only=True)
        assert (alert.kind, alert.group, alert.unit_code, alert.open) == (
            "group_unreachable",
            "CNS_Bản Tó Khò_Xã Mù Cả",
            "03451-02",
            True,
        )
        assert await alerts.list_alerts(s, await actor(app, "doan-ket"), today=TODAY) == []
        assert [a.id for a in await alerts.list_alerts(s, await actor(app, "mu-ca"), today=TODAY)] == [
            alert.id
        ]
        with pytest.raises(PermissionDenied, match="outside user doan-ket's scope"):
            await alerts.acknowledge(s, await actor(app, "doan-ket"), alert.id, today=TODAY)
    async with app.transaction() as s:
        done = await alerts.acknowledge(s, await actor(app, "mu-ca"), alert.id, today=TODAY)
        assert not done.open and await alerts.open_count(s, admin, today=TODAY) == 0
        entries = await audit.log(s)
    assert any(e.action == "alert.ack" and e.actor == "mu-ca" for e in entries)


async def test_cns_alerts_and_status_show_open_alerts(app: App, tmp_path: Path) -> None:
    await _one_group_gone(app, tmp_path)
    url = app.settings.database_url

    def cns(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cns_argv(url, *args), capture_output=True, text=True, timeout=60, check=False)

    status = cns("--as", "admin", "status", "1")
    assert status.returncode == 0 and "1 open alerts" in status.stdout, status.stdout
    listed = cns("--as", "admin", "--json", "alerts", "--open")
    (alert,) = json.loads(listed.stdout)
    assert alert["kind"] == "group_unreachable" and alert["acknowledged_at"] is None
    text = cns("--as", "admin", "alerts")
    assert "CNS_Bản Tó Khò_Xã Mù Cả (Bản Tó Khò)" in text.stdout and "open" in text.stdout
    acked = cns("--as", "mu-ca", "alerts", "ack", str(alert["id"]))
    assert acked.returncode == 0 and f"alert {alert['id']} acknowledged" in acked.stdout
    assert json.loads(cns("--as", "admin", "--json", "alerts", "--open").stdout) == []
    assert "open alerts" not in cns("--as", "admin", "status", "1").stdout
    missing = cns("--as", "admin", "alerts", "ack", "999")
    assert missing.returncode == 1 and "unknown alert 999" in missing.stderr


async def test_api_alerts(app: App, tmp_path: Path) -> None:
    from broadcaster.directory import users
    from tests.web.world import client

    await _one_group_gone(app, tmp_path)
    async with app.transaction() as s:
        token = await users.issue_token(s, await actor(app, "mu-ca"), "mu-ca", "dash", today=TODAY)
        other = await users.issue_token(s, await actor(app, "doan-ket"), "doan-ket", "dash", today=TODAY)
    web = await client(app)
    try:
        mine = await web.get(
            "/api/alerts", params={"open": "1"}, headers={"Authorization": f"Bearer {token.token}"}
        )
        assert mine.status == 200 and [a["kind"] for a in await mine.json()] == ["group_unreachable"]
        theirs = await web.get("/api/alerts", headers={"Authorization": f"Bearer {other.token}"})
        assert theirs.status == 200 and await theirs.json() == []
    finally:
        await web.close()
