"""Users, roles, scopes and the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from broadcaster.directory import users
from broadcaster.domain.errors import Conflict, InputError, NotFound, PermissionDenied
from broadcaster.domain.models import AuditEntry
from broadcaster.storage.app import App
from tests.helpers import TODAY, add_users, seed_lai_chau


async def test_first_user_must_be_an_unscoped_admin(app: App) -> None:
    with pytest.raises(PermissionDenied, match="first user must be an unscoped admin"):
        async with app.transaction() as s:
            await users.add_user(s, None, "ed", "editor", today=TODAY)
    async with app.transaction() as s:
        await users.add_user(s, None, "root", "admin", today=TODAY)
    with pytest.raises(PermissionDenied, match="--as USER"):
        async with app.transaction() as s:
            await users.add_user(s, None, "second", "viewer", today=TODAY)
    with pytest.raises(NotFound, match="unknown user 'ghost'"):
        async with app.transaction() as s:
            await users.add_user(s, "ghost", "second", "viewer", today=TODAY)


async def test_scoped_admin_adds_only_inside_its_scope(app: App) -> None:
    await seed_lai_chau(app)
    await add_users(app, [("muca.admin", "admin", "03451")])
    async with app.transaction() as s:
        await users.add_user(s, "muca.admin", "muca.ed", "editor", scope_code="03451-01", today=TODAY)
    for scope in (None, "03388", "12"):
        with pytest.raises(PermissionDenied):
            async with app.transaction() as s:
                await users.add_user(
                    s, "muca.admin", f"x{scope or 0}", "editor", scope_code=scope, today=TODAY
                )


async def test_bad_user_input(app: App) -> None:
    await seed_lai_chau(app)
    for name, role, message in (("Bad Name", "viewer", "invalid user name"), ("ok", "boss", "unknown role")):
        with pytest.raises(InputError, match=message):
            async with app.transaction() as s:
                await users.add_user(s, "admin", name, role, today=TODAY)
    with pytest.raises(Conflict):
        async with app.transaction() as s:
            await users.add_user(s, "admin", "admin", "viewer", today=TODAY)


async def test_roles_and_audit(app: App) -> None:
    await seed_lai_chau(app)
    await add_users(app, [("v", "viewer", None), ("ed", "editor", "03451")])
    async with app.transaction() as s:
        viewer = await users.get_actor(s, "v")
        editor = await users.get_actor(s, "ed")
        listed = await users.list_users(s)
        log = (await s.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars().all()  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied, match="may not send content"):
        viewer.require(users.Permission.SEND)
    editor.require(users.Permission.SEND)
    with pytest.raises(PermissionDenied, match="may not manage groups"):
        editor.require(users.Permission.MANAGE_GROUPS)
    assert editor.scope_code == "03451"
    assert {u.name: u.scope for u in listed} == {"admin": None, "ed": "03451", "v": None}
    adds = [e for e in log if e.action == "user.add"]
    assert [e.entity_id for e in adds] == ["admin", "v", "ed"]
    assert adds[0].actor == "bootstrap" and adds[2].actor == "admin"
    assert adds[2].before is None and adds[2].after is not None and adds[2].after["role"] == "editor"


async def test_scoped_admin_manages_only_users_inside_its_scope(app: App) -> None:
    """Tokens act as their user: a scoped admin may issue them only for users scoped inside its own
    subtree, never for an unscoped user or another commune's."""
    await seed_lai_chau(app)
    await add_users(
        app,
        [
            ("muca.admin", "admin", "03451"),
            ("muca.ed", "editor", "03451-01"),
            ("doanket.ed", "editor", "03388"),
            ("tinh.ed", "editor", None),
        ],
    )
    async with app.transaction() as s:
        muca = await users.get_actor(s, "muca.admin")
    for target, why in (
        ("admin", "admin, who acts province-wide"),
        ("tinh.ed", "tinh.ed, who acts province-wide"),
        ("doanket.ed", "doanket.ed, scoped to unit 03388"),
    ):
        with pytest.raises(PermissionDenied, match=f"muca.admin may not issue a token for user {why}"):
            async with app.transaction() as s:
                await users.issue_token(s, muca, target, "x", today=TODAY)
    async with app.transaction() as s:
        assert (await users.issue_token(s, muca, "muca.ed", "dash", today=TODAY)).user == "muca.ed"
        assert (await users.issue_token(s, muca, "muca.admin", "own", today=TODAY)).user == "muca.admin"
    ed = await _actor(app, "muca.ed")
    with pytest.raises(PermissionDenied, match="may not manage users"):
        async with app.transaction() as s:
            await users.issue_token(s, ed, "muca.admin", "x", today=TODAY)


async def test_nobody_grants_more_than_they_hold(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A role that may manage users cannot hand out a role with permissions it does not have."""
    await seed_lai_chau(app)
    await add_users(app, [("lead", "approver", "03451"), ("boss", "admin", None)])
    monkeypatch.setitem(
        users.ROLE_PERMISSIONS,
        "approver",
        users.ROLE_PERMISSIONS["approver"] | {users.Permission.MANAGE_USERS},
    )
    async with app.transaction() as s:
        await users.add_user(s, "lead", "lead.ed", "editor", scope_code="03451-01", today=TODAY)
    for role in ("admin", "approver"):
        if role == "approver":
            async with app.transaction() as s:  # the same role: allowed
                await users.add_user(s, "lead", "lead.ap", role, scope_code="03451", today=TODAY)
            continue
        with pytest.raises(PermissionDenied, match=r"lead \(approver\) may not grant the role admin"):
            async with app.transaction() as s:
                await users.add_user(s, "lead", "lead.admin", role, scope_code="03451", today=TODAY)
    lead = await _actor(app, "lead")
    with pytest.raises(PermissionDenied, match="may not issue a token for user boss"):
        async with app.transaction() as s:
            await users.issue_token(s, lead, "boss", "x", today=TODAY)


async def _actor(app: App, name: str) -> users.Actor:
    async with app.transaction() as s:
        return await users.get_actor(s, name)
