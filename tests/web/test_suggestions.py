"""Suggested registrations end to end: the bot is added to groups (real webhook requests), an admin
lists the suggestions with `cns groups suggestions`, accepts one, dismisses another; scope applies."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import select
from sqlmodel import col

from broadcaster.bootstrap import hook_codecs
from broadcaster.domain.models import ChatGroup, GroupSuggestion
from broadcaster.inbound.processing import process_pending
from broadcaster.storage.app import App
from tests.helpers import add_users, cns_argv
from tests.web.world import World, body, build, client

BOT = {"id": 7000000001, "is_bot": True, "first_name": "Tin tỉnh"}


def cns(app: App, *args: str, user: str = "admin") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cns_argv(app.settings.database_url, "--as", user, *args),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _bot_added(app: App, world: World, update_id: int, chat_id: int, title: str) -> None:
    update = {
        "update_id": update_id,
        "my_chat_member": {
            "chat": {"id": chat_id, "type": "supergroup", "title": title},
            "from": {"id": 1},
            "date": 1,
            "old_chat_member": {"status": "left", "user": BOT},
            "new_chat_member": {"status": "member", "user": BOT},
        },
    }
    web = await client(app)
    try:
        headers = {"X-Telegram-Bot-Api-Secret-Token": world.secrets["tg"]}
        assert (await web.post("/hooks/telegram/tg", data=body(update), headers=headers)).status == 200
    finally:
        await web.close()
    await process_pending(app, hook_codecs())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_suggestions_are_listed_accepted_and_dismissed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build(app, monkeypatch)
    await add_users(app, [("xa_admin", "admin", "03451"), ("ha_admin", "admin", "03637")])
    # A village of Mù Cả with no Telegram group yet, one with a title typo, one that is not ours.
    await _bot_added(app, world, 1, -1007000000001, "CNS_Bản Tó Khò_Xã Mù Cả")
    await _bot_added(app, world, 2, -1007000000002, "Nhóm bạn bè đi câu")

    listed = cns(app, "--json", "groups", "suggestions")
    assert listed.returncode == 0, listed.stderr
    rows = {r["external_id"]: r for r in json.loads(listed.stdout)}
    assert rows.keys() == {"-1007000000001", "-1007000000002"}
    matched, stranger = rows["-1007000000001"], rows["-1007000000002"]
    assert (matched["unit"], matched["match"], matched["account"]) == ("03451-02", "exact", "tg")
    assert (stranger["unit"], stranger["match"]) == (None, "none")

    # Scoped admins see what matched inside their subtree, never the unmatched ones.
    mine = json.loads(cns(app, "--json", "groups", "suggestions", user="xa_admin").stdout)
    assert [r["id"] for r in mine] == [matched["id"]]
    assert json.loads(cns(app, "--json", "groups", "suggestions", user="ha_admin").stdout) == []
    refused = cns(app, "groups", "accept", str(matched["id"]), user="ha_admin")
    assert refused.returncode == 1 and "outside" in refused.stderr
    viewer = cns(app, "groups", "suggestions", user="xa")
    assert viewer.returncode == 1 and "may not" in viewer.stderr

    # No unit matched: the admin must say which.
    unmatched = cns(app, "groups", "accept", str(stranger["id"]))
    assert unmatched.returncode == 1 and "--unit" in unmatched.stderr

    accepted = cns(app, "--json", "groups", "accept", str(matched["id"]), user="xa_admin")
    assert accepted.returncode == 0, accepted.stderr
    group = json.loads(accepted.stdout)
    assert (group["unit"], group["external_id"], group["status"]) == ("03451-02", "-1007000000001", "active")
    again = cns(app, "groups", "accept", str(matched["id"]))
    assert again.returncode == 1 and "already accepted" in again.stderr

    dismissed = cns(app, "groups", "dismiss", str(stranger["id"]))
    assert dismissed.returncode == 0, dismissed.stderr
    assert cns(app, "groups", "suggestions").stdout.strip() == "no pending group suggestions"

    async with app.sessions() as s:
        registered = (
            await s.execute(select(ChatGroup).where(col(ChatGroup.external_id) == "-1007000000001"))
        ).scalar_one()
        statuses = dict(
            (await s.execute(select(col(GroupSuggestion.external_id), col(GroupSuggestion.status)))).all()
        )
    assert (registered.title, registered.platform) == ("CNS_Bản Tó Khò_Xã Mù Cả", "telegram")
    assert statuses == {"-1007000000001": "accepted", "-1007000000002": "dismissed"}

    # Now registered, the group's events are its own; the dismissed one comes back if the bot is added again.
    await _bot_added(app, world, 3, -1007000000002, "Nhóm bạn bè đi câu")
    relisted = json.loads(cns(app, "--json", "groups", "suggestions").stdout)
    assert [r["external_id"] for r in relisted] == ["-1007000000002"]
