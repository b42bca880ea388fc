"""Tracked links, relay confirmations, the monthly report, the engagement log and the JSON API."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlmodel import col

from broadcaster.directory import users
from broadcaster.domain.errors import PermissionDenied
from broadcaster.domain.models import Delivery, Dispatch, Interaction
from broadcaster.domain.results import to_data
from broadcaster.domain.sqltypes import utcnow
from broadcaster.inbound import privacy
from broadcaster.inbound.links import confirmation_token, link_tracker
from broadcaster.reports import engagement
from broadcaster.reports import monthly as reports
from broadcaster.storage.app import App
from tests.helpers import TODAY, actor
from tests.web.world import build, client

BROWSER = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36"


async def test_tracked_links_count_people_not_robots_or_repeats(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build(app, monkeypatch)
    delivery = world.deliveries["gmf-345102"]
    url = link_tracker(app.settings)(delivery.id)("https://vneid.gov.vn/hd")  # type: ignore[arg-type]
    path = url.split("127.0.0.1:8080", 1)[1]
    web = await client(app)
    try:
        for agent in (BROWSER, BROWSER, "facebookexternalhit/1.1", "Zalo", ""):
            response = await web.get(path, headers={"User-Agent": agent}, allow_redirects=False)
            assert response.status == 302 and response.headers["Location"] == "https://vneid.gov.vn/hd"
        other = await web.get(path, headers={"User-Agent": BROWSER + " other"}, allow_redirects=False)
        assert other.status == 302
        for bad in (path[:-1] + ("A" if path[-1] != "A" else "B"), "/l/zzz", "/l/" + "1" * 300):
            assert (await web.get(bad, allow_redirects=False)).status == 404
    finally:
        await web.close()
    async with app.sessions() as s:
        clicks = (
            (await s.execute(select(Interaction).where(col(Interaction.kind) == "click"))).scalars().all()
        )
    assert sorted(c.count for c in clicks) == [0, 1, 1]  # two people, one repeat; robots not stored
    assert {c.delivery_id for c in clicks} == {delivery.id}


async def test_relay_confirmation_needs_a_post_and_the_right_token(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build(app, monkeypatch)
    delivery = world.deliveries["relay-345103"]
    token = confirmation_token(app.settings, f"delivery-{delivery.id}")
    web = await client(app)
    try:
        page = await web.get(f"/r/{token}")
        assert page.status == 200 and "<form" in await page.text()
        async with app.sessions() as s:
            assert (await s.get(Delivery, delivery.id)).state == "awaiting_confirmation"  # type: ignore[union-attr]
        assert (await web.post(f"/r/{token}")).status == 200
        assert (await web.post(f"/r/{token}")).status == 200  # twice: still one confirmation
        forged = f"delivery-{delivery.id}.AAAAAAAAAAAAAAAA"
        assert (await web.post(f"/r/{forged}")).status == 404
    finally:
        await web.close()
    async with app.sessions() as s:
        confirmed = await s.get(Delivery, delivery.id)
        rows = (
            (await s.execute(select(Interaction).where(col(Interaction.kind) == "confirmation")))
            .scalars()
            .all()
        )
    assert confirmed is not None and confirmed.state == "confirmed" and confirmed.confirmed_at is not None
    assert len(rows) == 1


async def test_monthly_report_rolls_up_on_the_months_tree(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await build(app, monkeypatch)
    async with app.transaction() as s:
        scheduled = (await s.get(Dispatch, world.dispatch_id)).scheduled_at  # type: ignore[union-attr]
        for external, kind in (
            ("gmf-345102", "reply"),
            ("gmf-345102", "reaction"),
            ("-1000000003451", "reply"),
        ):
            d = world.deliveries[external]
            s.add(
                Interaction(
                    kind=kind,
                    at=utcnow(),
                    platform=d.platform,
                    group_id=d.group_id,
                    unit_id=d.unit_id,
                    delivery_id=d.id,
                    dispatch_id=d.dispatch_id,
                )
            )
    month = scheduled.astimezone(reports.LOCAL).strftime("%Y-%m")
    async with app.sessions() as s:
        report = to_data(await reports.monthly(s, None, month))
        june = to_data(await reports.monthly(s, None, "2025-06"))
        july = to_data(await reports.monthly(s, None, "2025-07"))
        commune = to_data(await reports.monthly(s, await users.get_actor(s, "xa"), month))
    totals = report["totals"]
    assert (totals["groups"], totals["posts_planned"], totals["posts_delivered"]) == (7, 7, 7)
    assert (totals["replies"], totals["reactions"], totals["relay_sent"], totals["posts_confirmed"]) == (
        2,
        1,
        1,
        0,
    )
    assert (
        totals["members"] is None and totals["members_unknown_groups"] == 7
    )  # never counted: unknown, not 0
    by_code = {u["code"]: u for u in report["units"]}
    for unit in report["units"]:  # each total = own + the totals of the children
        children = [u for u in report["units"] if u["parent_code"] == unit["code"]]
        for key in ("groups", "posts_delivered", "replies", "reactions", "clicks", "units_covered"):
            own = unit["own"][key] if key != "units_covered" else int(unit["own"]["groups_active"] > 0)
            assert unit["total"][key] == own + sum(c["total"][key] for c in children), (unit["code"], key)
    assert by_code["03451"]["total"]["replies"] == 2 and by_code["03451-02"]["total"]["reply_rate"] == 1.0
    assert "district" in june["tiers"] and "district" not in july["tiers"]
    assert (
        june["totals"]["posts_planned"] == 0 and june["totals"]["replies"] == 0
    )  # a month with no data: valid
    assert commune["root"]["code"] == "03451"  # a scoped user's report starts at their unit
    async with app.sessions() as s:
        with pytest.raises(PermissionDenied):
            await reports.monthly(s, await users.get_actor(s, "xa"), month, "12")


async def test_engagement_log_api_and_privacy(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await build(app, monkeypatch)
    key = app.settings.key_for_pseudonyms()
    async with app.transaction() as s:
        for external, text, person in (
            ("gmf-345102", "Bản Tó Khò đã nhận", "111"),
            ("-1001200000012", "Tỉnh", "222"),
        ):
            d = world.deliveries[external]
            s.add(
                Interaction(
                    kind="reply",
                    at=utcnow(),
                    platform=d.platform,
                    group_id=d.group_id,
                    unit_id=d.unit_id,
                    delivery_id=d.id,
                    dispatch_id=d.dispatch_id,
                    text=text,
                    actor_hash=privacy.pseudonym(key, d.platform, person),
                )
            )
    async with app.transaction() as s:
        token = await users.issue_token(s, await actor(app, "xa"), "xa", "dashboard")
        mine = await engagement.interactions(s, await users.get_actor(s, "xa"), engagement.LogFilter(), TODAY)
    assert [r.text for r in mine] == ["Bản Tó Khò đã nhận"]  # the commune user sees their subtree only
    web = await client(app)
    try:
        assert (await web.get("/api/interactions")).status == 401
        assert (
            await web.get("/api/interactions", headers={"Authorization": "Bearer cns_wrong"})
        ).status == 401
        auth = {"Authorization": f"Bearer {token.token}"}
        rows = await (await web.get("/api/interactions", headers=auth)).json()
        assert [r["text"] for r in rows] == ["Bản Tó Khò đã nhận"]
        assert (await web.get("/api/reports/monthly", params={"unit": "12"}, headers=auth)).status == 403
        assert (await web.get("/api/interactions", params={"since": "yesterday"}, headers=auth)).status == 400
        for path, params in (  # far past or future: a clear 400, never "temporarily unavailable"
            ("/api/interactions", {"since": "0001-01-01"}),
            ("/api/interactions", {"until": "9999-12-31T23:59-05:00"}),
            ("/api/reports/monthly", {"month": "9999-12"}),
        ):
            answer = await web.get(path, params=params, headers=auth)
            assert answer.status == 400 and "out of range" in (await answer.json())["error"], (path, params)
        assert (await web.get(f"/api/dispatches/{world.dispatch_id}", headers=auth)).status == 403
        health = await web.get("/healthz")
        assert health.status == 200 and (await health.json())["database"] == "ok"
        metrics = await (await web.get("/metrics")).text()
        assert "# TYPE cns_deliveries gauge" in metrics and 'cns_deliveries{state="sent"} 6' in metrics
    finally:
        await web.close()
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        exported = await privacy.export_person(s, admin, key, "zalo", "111", today=TODAY)
        assert [i.text for i in exported.interactions] == ["Bản Tó Khò đã nhận"]
        assert await privacy.delete_person(
            s, admin, key, "zalo", "111", today=TODAY
        ) == privacy.PersonDeleted(1, 0)
    async with app.sessions() as s:
        left = await engagement.interactions(s, None, engagement.LogFilter(), date.today())
    assert [r.text for r in left] == ["Tỉnh"]
