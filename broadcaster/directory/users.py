"""Users, roles and unit scopes.

Roles: ``admin`` manages units, accounts, groups and users; ``editor`` writes content and sends it;
``approver`` approves or rejects content (never text they wrote since its last approval) and sends;
``viewer`` reads. Each user is scoped to a unit subtree (no scope: the whole system). Scope is checked
against the tree as it stands on the day the action applies to (for a dispatch: its send date).

Managing users (adding them, issuing their API tokens) stays inside the manager's own reach: only users
scoped inside the manager's subtree (an unscoped user only by an unscoped manager), and never with a
role that has a permission the manager lacks.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.domain.errors import Conflict, InputError, NotFound, PermissionDenied
from broadcaster.domain.models import ApiToken, Unit, UnitSuccession, User, pk
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.timeutil import today as local_today
from broadcaster.storage.app import App
from broadcaster.units.tree import UnitTree, load_tree

log = logging.getLogger(__name__)

ROLES = ("admin", "editor", "approver", "viewer")
BOOTSTRAP_ACTOR = "bootstrap"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Permission(StrEnum):
    MANAGE_UNITS = "manage units and tiers"
    MANAGE_ACCOUNTS = "manage platform accounts"
    MANAGE_GROUPS = "manage groups"
    MANAGE_USERS = "manage users"
    WRITE_CONTENT = "write content"
    APPROVE_CONTENT = "approve content"
    SEND = "send content"
    VIEW = "view"


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "editor": frozenset({Permission.WRITE_CONTENT, Permission.SEND, Permission.VIEW}),
    "approver": frozenset(
        {Permission.WRITE_CONTENT, Permission.APPROVE_CONTENT, Permission.SEND, Permission.VIEW}
    ),
    "viewer": frozenset({Permission.VIEW}),
}
# Province-wide data (the unit tree, platform credentials) is only changed by an unscoped admin.
GLOBAL_PERMISSIONS = frozenset({Permission.MANAGE_UNITS, Permission.MANAGE_ACCOUNTS})


@dataclass(frozen=True, slots=True)
class Actor:
    id: int
    name: str
    role: str
    scope_unit_id: int | None
    scope_code: str | None

    def require(self, permission: Permission) -> None:
        if permission not in ROLE_PERMISSIONS[self.role]:
            raise PermissionDenied(f"user {self.name} ({self.role}) may not {permission.value}")
        if permission in GLOBAL_PERMISSIONS and self.scope_unit_id is not None:
            raise PermissionDenied(
                f"user {self.name} is scoped to unit {self.scope_code} and may not {permission.value}"
            )

    def require_within(self, tree: UnitTree, unit_id: int, what: str) -> None:
        """Refuse ``what`` on ``unit_id`` unless it lies inside this user's subtree on ``tree.as_of``."""
        if self.scope_unit_id is None:
            return
        if self.scope_unit_id not in tree.nodes:
            raise PermissionDenied(
                f"user {self.name}'s scope {self.scope_code} does not exist on {tree.as_of}; ask an admin"
            )
        if not tree.is_within(unit_id, self.scope_unit_id):
            node = tree.nodes[unit_id]
            raise PermissionDenied(
                f"{what}: unit {node.code} ({node.name}) is outside user {self.name}'s scope "
                f"{self.scope_code}"
            )


async def scope_units(session: AsyncSession, actor: Actor, tree: UnitTree) -> frozenset[int] | None:
    """The ids of the units inside ``actor``'s subtree on ``tree.as_of`` (None: unscoped, everything).
    A unit that no longer exists on that day (merged, split) counts by its successors: it is inside
    when one of them is, so a commune's data stays its successor's after a reorganisation."""
    if actor.scope_unit_id is None:
        return None
    if actor.scope_unit_id not in tree.nodes:
        raise PermissionDenied(
            f"user {actor.name}'s scope {actor.scope_code} does not exist on {tree.as_of}; ask an admin"
        )
    inside = {node.id for node in tree.subtree(actor.scope_unit_id)}
    predecessors: defaultdict[int, list[int]] = defaultdict(list)
    for old, new in await session.execute(
        select(col(UnitSuccession.old_unit_id), col(UnitSuccession.new_unit_id))
    ):
        predecessors[new].append(old)
    stack = list(inside)
    while stack:
        for old in predecessors.get(stack.pop(), ()):
            if old not in inside and old not in tree.nodes:
                inside.add(old)
                stack.append(old)
    return frozenset(inside)


async def unit_label(session: AsyncSession, tree: UnitTree, unit_id: int) -> str:
    """``CODE (Name)`` of a unit, whether or not it exists on ``tree.as_of``."""
    node = tree.nodes.get(unit_id)
    if node is not None:
        return f"{node.code} ({node.name})"
    unit = await session.get(Unit, unit_id)
    return f"{unit.code} ({unit.name})" if unit is not None else f"#{unit_id}"


def _require_may_grant(actor: Actor, role: str, doing: str) -> None:
    """Nobody hands out a role with a permission they do not hold themselves."""
    if not ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[actor.role]:
        raise PermissionDenied(
            f"user {actor.name} ({actor.role}) may not {doing}: {role} has permissions "
            f"that {actor.role} does not"
        )


@asynccontextmanager
async def refusals_audited(
    app: App, actor_name: str | None, action: str, entity: str, entity_id: object
) -> AsyncIterator[None]:
    """Run a change; when it is refused (:class:`PermissionDenied`), keep the refusal in the audit log as
    ``ACTION.refused`` with its reason. The change's own transaction is rolled back with everything in
    it, so the entry is written in a transaction of its own, after it. The refusal is raised as it was."""
    try:
        yield
    except PermissionDenied as exc:
        if actor_name:
            try:
                async with app.transaction() as s:
                    await audit.record(
                        s, actor_name[:64], f"{action}.refused", entity, entity_id, after={"reason": str(exc)}
                    )
            except Exception as failure:  # the refusal stands, recorded or not
                log.warning("could not record the refusal of %s in the audit log: %s", action, failure)
        raise


async def get_actor(session: AsyncSession, name: str | None) -> Actor:
    if not name:
        raise PermissionDenied("this command changes data: say who you are with --as USER or CNS_USER")
    row = (await session.execute(select(User).where(col(User.name) == name))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"unknown user {name!r}")
    if not row.active:
        raise PermissionDenied(f"user {name} is deactivated")
    code = None
    if row.scope_unit_id is not None:
        code = (
            await session.execute(select(col(Unit.code)).where(col(Unit.id) == row.scope_unit_id))
        ).scalar()
    return Actor(pk(row.id), row.name, row.role, row.scope_unit_id, code)


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as ``cns users add|list`` show them (``scope``: the code of their subtree, or None)."""

    name: str
    full_name: str
    role: str
    scope: str | None
    active: bool

    @classmethod
    def of(cls, user: User, scope_code: str | None) -> UserInfo:
        return cls(user.name, user.full_name, user.role, scope_code, user.active)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """``cns users token``: the token, shown this once (only its hash is stored)."""

    user: str
    label: str
    token: str


async def add_user(
    session: AsyncSession,
    actor_name: str | None,
    name: str,
    role: str,
    *,
    scope_code: str | None = None,
    full_name: str = "",
    today: date,
) -> User:
    """Add a user. On an empty database the first user may be added without --as, and must be an admin."""
    if not _NAME.match(name):
        raise InputError(f"invalid user name {name!r}: use lower-case letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise InputError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    has_users = (await session.execute(select(func.count()).select_from(User))).scalar_one() > 0
    tree = await load_tree(session, today)
    scope_id = tree.get(scope_code).id if scope_code else None
    if has_users:
        actor = await get_actor(session, actor_name)
        actor.require(Permission.MANAGE_USERS)
        _require_may_grant(actor, role, f"grant the role {role}")
        if actor.scope_unit_id is not None:
            if scope_id is None:
                raise PermissionDenied(
                    f"user {actor.name} may only add users scoped inside {actor.scope_code}"
                )
            actor.require_within(tree, scope_id, "add user")
        by = actor.name
    else:
        if role != "admin" or scope_id is not None:
            raise PermissionDenied(
                "the first user must be an unscoped admin (cns users add NAME --role admin)"
            )
        by = actor_name or BOOTSTRAP_ACTOR
    if (await session.execute(select(col(User.id)).where(col(User.name) == name))).first() is not None:
        raise Conflict(f"user {name} already exists")
    user = User(name=name, role=role, scope_unit_id=scope_id, full_name=full_name)
    session.add(user)
    await session.flush()
    await audit.record(session, by, "user.add", "user", name, after=UserInfo.of(user, scope_code))
    return user


async def list_users(session: AsyncSession) -> list[UserInfo]:
    rows = await session.execute(
        select(User, col(Unit.code))
        .outerjoin(Unit, col(Unit.id) == col(User.scope_unit_id))
        .order_by(col(User.name))
    )
    return [UserInfo.of(user, code) for user, code in rows]


async def issue_token(
    session: AsyncSession, actor: Actor | None, user_name: str, label: str, *, today: date | None = None
) -> IssuedToken:
    """A new API token for ``user_name`` (shown once; only its hash is kept). Users issue their own; an
    admin may issue one for a user it could have added: a token acts with all of its user's role and
    scope, so the user must hold no permission the admin does not, and be scoped inside the admin's
    subtree (on ``today``'s tree) unless the admin is unscoped."""
    if actor is None:
        raise PermissionDenied("say who you are with --as USER or CNS_USER")
    if actor.name != user_name:
        actor.require(Permission.MANAGE_USERS)
    user = (await session.execute(select(User).where(col(User.name) == user_name))).scalar_one_or_none()
    if user is None:
        raise NotFound(f"unknown user {user_name!r}")
    if actor.name != user_name:
        doing = f"issue a token for user {user_name}"
        _require_may_grant(actor, user.role, f"{doing} ({user.role})")
        if actor.scope_unit_id is not None:
            if user.scope_unit_id is None:
                raise PermissionDenied(
                    f"user {actor.name} may not {doing}, who acts province-wide: "
                    f"{actor.name} is scoped to {actor.scope_code}"
                )
            tree = await load_tree(session, today or local_today())
            inside = await scope_units(session, actor, tree)
            if inside is not None and user.scope_unit_id not in inside:
                label_of = await unit_label(session, tree, user.scope_unit_id)
                raise PermissionDenied(
                    f"user {actor.name} may not {doing}, scoped to unit {label_of}, outside "
                    f"{actor.name}'s scope {actor.scope_code}"
                )
    if not 1 <= len(label) <= 64:
        raise InputError("a token label is 1 to 64 characters")
    token = "cns_" + secrets.token_urlsafe(32)
    session.add(
        ApiToken(user_id=pk(user.id), name=label, token_hash=hashlib.sha256(token.encode()).hexdigest())
    )
    await audit.record(session, actor.name, "user.token", "user", user_name, after={"token": label})
    return IssuedToken(user_name, label, token)


async def actor_for_token(session: AsyncSession, token: str) -> Actor | None:
    """The user an API token acts as, or None (unknown, revoked, or the user deactivated)."""
    if not token.startswith("cns_") or len(token) > 100:
        return None
    digest = hashlib.sha256(token.encode()).hexdigest()
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, col(User.id) == col(ApiToken.user_id))
            .where(col(ApiToken.token_hash) == digest, col(ApiToken.revoked_at).is_(None))
        )
    ).first()
    if row is None or not row[1].active:
        return None
    row[0].last_used_at = utcnow()
    return await get_actor(session, row[1].name)
