"""Unit scope on what the API shows and on the privacy commands: a scoped user sees and erases only what
belongs to their subtree; refusals on the command line are one line, exit 1, and audited."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from broadcaster.directory import users
from broadcaster.domain.models import Account, AuditEntry, InboundEvent, Interaction
from broadcaster.domain.sqltypes import utcnow
from broadcaster.editorial import workflow
from broadcaster.inbound import privacy
from broadcaster.storage.app import App
from tests.helpers import TODAY, actor, add_users, cns_argv, write
from tests.web.world import World, build, client

BODY = "Hướng dẫn cho {unit_name}."


async def _content(app: App, author: str, approver: str | None = None) -> int:
    writer = await actor(app, author)
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s, writer, title=f"Bài của {author}", body=BODY, category="x", max_bytes=1
        )
        cid = item.id or 0
        await workflow.submit(s, writer, cid)
    if approver is not None:
        checker = await actor(app, approver)
        async with app.transaction() as s:
            await workflow.approve(s, checker, cid)
    return cid


async def _tokens(app: App, names: list[str]) -> dict[str, dict[str, str]]:
    admin = await actor(app, "admin")
    out = {}
    async with app.transaction() as s:
        for name in names:
            issued = await users.issue_token(s, admin, name, "test", today=TODAY)
            out[name] = {"Authorization": f"Bearer {issued.token}"}
    return out


async def test_api_content_follows_the_scope(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await build(app, monkeypatch)  # content 1: by ed, approved by ap, dispatched province-wide
    await add_users(
        app,
        [
            ("v", "viewer", None),
            ("xa.ed", "editor", "03451-01"),
            ("xa.ap", "approver", "03451"),
            ("dk.ed", "editor", "03388"),
        ],
    )
    dispatched = 1
    province_draft = await _content(app, "ed")
    by_village_editor = await _content(app, "xa.ed")
    by_other_commune = await _content(app, "dk.ed")
    approved_inside = await _content(app, "ed", approver="xa.ap")
    auth = await _tokens(app, ["xa", "v"])
    web = await client(app)
    try:

        async def get(path: str, who: str) -> tuple[int, Any]:
            response = await web.get(path, headers=auth[who])
            return response.status, await response.json()

        status, rows = await get("/api/content", "xa")
        assert status == 200
        assert sorted(r["id"] for r in rows) == sorted([dispatched, by_village_editor, approved_inside])
        status, rows = await get("/api/content", "v")  # unscoped: everything
        assert sorted(r["id"] for r in rows) == sorted(
            [dispatched, province_draft, by_village_editor, by_other_commune, approved_inside]
        )
        assert (await get(f"/api/content/{by_village_editor}", "xa"))[0] == 200
        for hidden in (province_draft, by_other_commune):
            status, answer = await get(f"/api/content/{hidden}", "xa")
            assert status == 403 and "outside user xa's scope 03451" in answer["error"]
        assert (await get("/api/content?status=submitted", "xa"))[1] == [
            r for r in (await get("/api/content?status=submitted", "v"))[1] if r["id"] == by_village_editor
        ]
    finally:
        await web.close()
    assert world.dispatch_id == dispatched


async def test_api_unmatched_events_go_to_unscoped_admins_only(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events naming nothing we know belong to no unit, so to nobody's subtree."""
    await build(app, monkeypatch)
    await add_users(app, [("xa.admin", "admin", "03451")])
    async with app.transaction() as s:
        account_id = (await s.execute(select(col(Account.id)).where(col(Account.name) == "tg"))).scalar_one()
        s.add(InboundEvent(account_id=account_id, platform="telegram", key="u-1", status="unmatched"))
    auth = await _tokens(app, ["xa.admin", "admin"])
    web = await client(app)
    try:
        answer = await web.get("/api/unmatched", headers=auth["admin"])
        assert answer.status == 200 and [r["status"] for r in await answer.json()] == ["unmatched"]
        answer = await web.get("/api/unmatched", headers=auth["xa.admin"])
        assert answer.status == 200 and await answer.json() == []
    finally:
        await web.close()


async def _person(app: App, world: World) -> dict[str, int]:
    """Person 111 replied in a village of Mù Cả and in the province's group; one more event of theirs
    names nothing we know."""
    key = app.settings.key_for_pseudonyms()
    ids: dict[str, int] = {}
    async with app.transaction() as s:
        zalo = (await s.execute(select(col(Account.id)).where(col(Account.name) == "zalo"))).scalar_one()
        for external, text in (("gmf-345102", "Bản Tó Khò"), ("-1001200000012", "Tỉnh"), (None, "?")):
            d = world.deliveries[external] if external else None
            person = privacy.pseudonym(key, "zalo", "111")
            event = InboundEvent(
                account_id=zalo,
                platform="zalo",
                key=f"e-{text}",
                status="done" if d else "unmatched",
                body=text.encode(),
                actor_hash=person,
            )
            s.add(event)
            await s.flush()
            ids[text] = event.id or 0
            if d is not None:
                s.add(
                    Interaction(
                        kind="reply",
                        at=utcnow(),
                        platform="zalo",
                        group_id=d.group_id,
                        unit_id=d.unit_id,
                        delivery_id=d.id,
                        dispatch_id=d.dispatch_id,
                        event_id=event.id,
                        text=text,
                        actor_hash=person,
                    )
                )
    return ids


async def test_privacy_requests_stay_inside_the_actors_subtree(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build(app, monkeypatch)
    await add_users(app, [("xa.admin", "admin", "03451"), ("dk.admin", "admin", "03388")])
    events = await _person(app, world)
    key = app.settings.key_for_pseudonyms()
    xa, dk, admin = await actor(app, "xa.admin"), await actor(app, "dk.admin"), await actor(app, "admin")
    async with app.transaction() as s:
        mine = await privacy.export_person(s, xa, key, "zalo", "111", today=TODAY)
        nothing = await privacy.export_person(s, dk, key, "zalo", "111", today=TODAY)
        everything = await privacy.export_person(s, admin, key, "zalo", "111", today=TODAY)
    assert [i.text for i in mine.interactions] == ["Bản Tó Khò"]
    assert [e.id for e in mine.raw_events] == [events["Bản Tó Khò"]]
    assert (nothing.interactions, nothing.raw_events) == ((), ())
    assert sorted(i.text or "" for i in everything.interactions) == ["Bản Tó Khò", "Tỉnh"]
    assert len(everything.raw_events) == 3
    async with app.transaction() as s:
        assert await privacy.delete_person(s, dk, key, "zalo", "111", today=TODAY) == privacy.PersonDeleted(
            0, 0
        )
        assert await privacy.delete_person(s, xa, key, "zalo", "111", today=TODAY) == privacy.PersonDeleted(
            1, 1
        )
    async with app.sessions() as s:
        left = (await s.execute(select(col(Interaction.text)))).scalars().all()
        bodies = dict((await s.execute(select(col(InboundEvent.id), col(InboundEvent.body)))).all())
    assert left == ["Tỉnh"]  # the province's interaction is not the commune's to erase
    assert bodies[events["Bản Tó Khò"]] is None and bodies[events["Tỉnh"]] == "Tỉnh".encode()
    async with app.transaction() as s:
        assert await privacy.delete_person(
            s, admin, key, "zalo", "111", today=TODAY
        ) == privacy.PersonDeleted(1, 2)


def _cns(app: App, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cns_argv(app.settings.database_url, "--as", user, *args),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_cli_refusals_are_one_line_and_audited(
    app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await build(app, monkeypatch)
    await add_users(app, [("xa.admin", "admin", "03451"), ("ap2", "approver", None)])
    groups_csv = write(
        tmp_path / "g.csv", "unit_code,account,external_id,title\n03451,fb,104857600000012,CNS_Xã Mù Cả\n"
    )
    ap = await actor(app, "ap")
    async with app.transaction() as s:
        item, _ = await workflow.create(s, ap, title="T", body=BODY, category="x", max_bytes=1)
    async with app.transaction() as s:
        await workflow.edit(s, await actor(app, "ed"), item.id or 0, title="T2", max_bytes=1)
        await workflow.submit(s, ap, item.id or 0)
    refusals = [
        (("users", "token", "admin"), "user.token.refused", "province-wide"),
        (("users", "add", "x", "--role", "viewer"), "user.add.refused", "only add users scoped inside"),
        (("groups", "import", str(groups_csv)), "group.import.refused", "outside user xa.admin's scope"),
    ]
    for args, _, why in refusals:
        done = _cns(app, "xa.admin", *args)
        assert done.returncode == 1 and why in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("cns: error: ")
    approve = _cns(app, "ap", "content", "approve", str(item.id))
    assert approve.returncode == 1 and "wrote revision 1" in approve.stderr
    secret = _cns(
        app, "admin", "accounts", "add", "z2", "--platform", "zalo", "--secret", "env:Z", "--set", "app_id=1",
        "--set", "oauth_url=https://x.example/?secret_key=abc",
    )  # fmt: skip
    assert secret.returncode == 1 and "secret_key" in secret.stderr and "abc" not in secret.stderr
    async with app.sessions() as s:
        audited = (
            (await s.execute(select(AuditEntry).where(col(AuditEntry.action).like("%.refused"))))
            .scalars()
            .all()
        )
        accounts = (await s.execute(select(col(Account.name)))).scalars().all()
    by_action = {e.action: e for e in audited}
    assert set(by_action) == {a for _, a, _ in refusals} | {"content.approve.refused"}
    assert by_action["user.token.refused"].actor == "xa.admin"
    assert by_action["user.token.refused"].entity_id == "admin"
    assert "province-wide" in json.dumps(by_action["user.token.refused"].after, ensure_ascii=False)
    assert by_action["content.approve.refused"].actor == "ap"
    assert "z2" not in accounts
