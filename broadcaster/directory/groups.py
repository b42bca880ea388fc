"""Groups: one chat group / page / endpoint of a unit on a platform, added one by one or from CSV.

Group CSV columns (header row required; optional columns may be left out):

    unit_code    official code of the unit on the import date (required)
    account      name of the account that posts into the group (required)
    external_id  the platform's id of the group/page/endpoint (required)
    title        the group's title as shown on the platform (required)
    platform     must equal the account's platform when given
    mode         direct (default) or relay
    admins       "Name=channel:address" entries separated by ";" (channel: telegram, zalo,
                 facebook, webhook or phone), e.g. "Lò Văn Pọm=zalo:84912345678; Tao Thị Hoa=phone:0912345678"
    status       active (default), unreachable, migrated or archived

A row whose (account, external_id) already exists updates that group: re-importing a file is safe.
An optional column left out of the file keeps what is stored for a known group (a file of the four
required columns never turns a relay group direct or drops its admins); a column present, even with an
empty cell, sets it (empty: the default). A scoped admin may only change groups whose unit, now and
after the change, lies inside their subtree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.accounts import check_platform, get_account
from broadcaster.directory.users import Actor, Permission, scope_units, unit_label
from broadcaster.domain.errors import Conflict, CsvError, InputError, NotFound, PermissionDenied
from broadcaster.domain.models import Account, ChatGroup, GroupStatusChange, Unit, pk
from broadcaster.domain.platforms import PLATFORMS
from broadcaster.domain.ports import ADMIN_ACTIVE, Admin
from broadcaster.domain.results import as_dict
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import GroupMode, GroupStatus, values_of
from broadcaster.storage.csvio import nfc, read_csv
from broadcaster.units.tree import UnitTree, load_tree

MODES = values_of(GroupMode)
STATUSES = values_of(GroupStatus)
ADMIN_CHANNELS = (*PLATFORMS, "phone")
GROUP_COLUMNS = ("unit_code", "account", "external_id", "title")
GROUP_OPTIONAL = ("platform", "mode", "admins", "status")


def parse_admins(text: str) -> list[dict[str, str]]:
    """Parse ``Name=channel:address; ...`` into ``[{"name", "channel", "address"}]``."""
    admins: list[dict[str, str]] = []
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        name, sep, reach = entry.partition("=")
        channel, sep2, address = reach.partition(":")
        channel = channel.strip().lower()
        if not sep or not sep2 or not name.strip() or not address.strip():
            raise InputError(f"admin {entry!r} must look like 'Name=channel:address'")
        if channel not in ADMIN_CHANNELS:
            raise InputError(
                f"admin {name.strip()!r}: unknown channel {channel!r} ({', '.join(ADMIN_CHANNELS)})"
            )
        admins.append({"name": nfc(name), "channel": channel, "address": address.strip()})
    return admins


def _validated(
    tree: UnitTree,
    account: Account,
    unit_code: str,
    platform: str | None,
    external_id: str,
    title: str,
    mode: str,
    admins: list[dict[str, str]],
    status: str,
) -> dict[str, Any]:
    unit = tree.get(unit_code)
    if platform and check_platform(platform) != account.platform:
        raise InputError(f"account {account.name} is a {account.platform} account, not {platform}")
    if not external_id or len(external_id) > 128:
        raise InputError("external_id must have 1 to 128 characters")
    if not title or len(title) > 255:
        raise InputError("title must have 1 to 255 characters")
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r} (modes: {', '.join(MODES)})")
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r} (statuses: {', '.join(STATUSES)})")
    if mode == GroupMode.RELAY and not admins:
        raise InputError("a relay group needs at least one admin to forward posts")
    return {
        "unit_id": unit.id,
        "platform": account.platform,
        "account_id": pk(account.id),
        "external_id": external_id,
        "title": title,
        "mode": mode,
        "admins": admins,
        "status": status,
    }


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group as ``cns groups add|list|accept`` show it (``unit``: its unit's code)."""

    id: int
    unit: str
    platform: str
    account: str
    external_id: str
    title: str
    mode: str
    admins: tuple[Admin, ...]
    status: str

    @classmethod
    def of(cls, group: ChatGroup, unit_code: str, account_name: str) -> GroupInfo:
        return cls(
            pk(group.id),
            unit_code,
            group.platform,
            account_name,
            group.external_id,
            group.title,
            group.mode,
            tuple(
                Admin(a["name"], a["channel"], a["address"], a.get("status", ADMIN_ACTIVE))
                for a in group.admins
            ),
            group.status,
        )


@dataclass(frozen=True, slots=True)
class GroupImport:
    """``cns groups import``: the file's rows, the groups added and the known ones updated."""

    rows: int
    added: int
    updated: int


async def add_group(
    session: AsyncSession,
    actor: Actor,
    *,
    unit_code: str,
    account_name: str,
    external_id: str,
    title: str,
    mode: str = GroupMode.DIRECT,
    admins: str = "",
    today: date,
) -> ChatGroup:
    actor.require(Permission.MANAGE_GROUPS)
    tree = await load_tree(session, today)
    account = await get_account(session, account_name)
    values = _validated(
        tree,
        account,
        unit_code,
        None,
        external_id.strip(),
        nfc(title),
        mode,
        parse_admins(admins),
        GroupStatus.ACTIVE,
    )
    actor.require_within(tree, values["unit_id"], "add group")
    exists = (
        await session.execute(
            select(col(ChatGroup.unit_id)).where(
                col(ChatGroup.account_id) == account.id, col(ChatGroup.external_id) == values["external_id"]
            )
        )
    ).first()
    if exists is not None:
        inside = await scope_units(session, actor, tree)
        await _require_group_inside(
            session, actor, tree, inside, exists[0], f"add group {account_name}/{values['external_id']}"
        )
        raise Conflict(f"account {account_name} already has a group with external id {external_id}")
    group = ChatGroup(**values)
    session.add(group)
    await session.flush()
    await audit.record(
        session,
        actor.name,
        "group.add",
        "group",
        group.id,
        after=GroupInfo.of(group, unit_code, account_name),
    )
    return group


async def _require_group_inside(
    session: AsyncSession,
    actor: Actor,
    tree: UnitTree,
    inside: frozenset[int] | None,
    unit_id: int,
    doing: str,
) -> None:
    """Refuse ``doing`` to a stored group unless its current unit lies in the actor's subtree (``inside``,
    from :func:`scope_units`; None: unscoped): whatever the change would make of it, the group is not
    theirs to change."""
    if inside is not None and unit_id not in inside:
        raise PermissionDenied(
            f"{doing}: the group belongs to unit {await unit_label(session, tree, unit_id)}, outside user "
            f"{actor.name}'s scope {actor.scope_code}"
        )


@dataclass(frozen=True, slots=True)
class _Stored:
    """What an import row updates: a known group as it is now."""

    id: int
    unit_id: int
    mode: str
    admins: list[dict[str, str]]
    status: str


async def import_groups(session: AsyncSession, actor: Actor, path: Path, today: date) -> GroupImport:
    """Validate the whole file, then insert new groups and update known ones; a bad row writes nothing.
    Optional columns the file leaves out keep a known group's stored values (new groups: the defaults)."""
    actor.require(Permission.MANAGE_GROUPS)
    name = str(path)
    records = read_csv(path, GROUP_COLUMNS, GROUP_OPTIONAL)
    tree = await load_tree(session, today)
    inside = await scope_units(session, actor, tree)
    accounts = {a.name: a for a in (await session.execute(select(Account))).scalars()}
    stored = await _known_groups(
        session,
        [(pk(accounts[r["account"]].id), r["external_id"]) for r in records if r["account"] in accounts],
    )
    seen: dict[tuple[int, str], int] = {}
    rows: list[dict[str, Any]] = []
    existing: dict[tuple[int, str], _Stored] = {}
    for rec in records:
        try:
            account = accounts.get(rec["account"])
            if account is None:
                raise NotFound(f"unknown account {rec['account']!r}")
            known = stored.get((pk(account.id), rec["external_id"]))
            present = rec.values.keys()
            values = _validated(
                tree,
                account,
                rec["unit_code"],
                rec["platform"],
                rec["external_id"],
                rec["title"],
                (rec["mode"] or GroupMode.DIRECT).lower()
                if known is None or "mode" in present
                else known.mode,
                parse_admins(rec["admins"]) if known is None or "admins" in present else known.admins,
                (rec["status"] or GroupStatus.ACTIVE).lower()
                if known is None or "status" in present
                else known.status,
            )
            doing = f"import group {rec['account']}/{rec['external_id']}"
            if known is not None:
                await _require_group_inside(session, actor, tree, inside, known.unit_id, doing)
            actor.require_within(tree, values["unit_id"], doing)
        except (InputError, NotFound) as exc:
            raise CsvError(name, str(exc), rec.line) from None
        except PermissionDenied as exc:
            raise PermissionDenied(f"{name}:{rec.line}: {exc}") from None
        key = (values["account_id"], values["external_id"])
        if key in seen:
            raise CsvError(
                name,
                f"duplicate group {rec['account']}/{rec['external_id']} (first on line {seen[key]})",
                rec.line,
            )
        seen[key] = rec.line
        rows.append(values)
        if known is not None:
            existing[key] = known
    fresh = [r for r in rows if (r["account_id"], r["external_id"]) not in existing]
    if fresh:
        await session.execute(insert(ChatGroup), fresh)
    now = utcnow()
    changed = 0
    moves = []
    for row in rows:
        known = existing.get((row["account_id"], row["external_id"]))
        if known is not None:
            if known.status != row["status"]:
                moves.append(
                    {
                        "group_id": known.id,
                        "at": now,
                        "previous": known.status,
                        "status": row["status"],
                        "reason": f"import {path.name}"[:200],
                    }
                )
            result = await session.execute(
                update(ChatGroup).where(col(ChatGroup.id) == known.id).values(**row, updated_at=now)
            )
            changed += result.rowcount  # type: ignore[attr-defined]
    if moves:  # kept for the reports of past months
        await session.execute(insert(GroupStatusChange), moves)
    summary = GroupImport(len(rows), len(fresh), changed)
    await audit.record(
        session, actor.name, "group.import", "group", path.name, after={**as_dict(summary), "file": name}
    )
    return summary


async def _known_groups(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], _Stored]:
    """The known groups among ``keys`` (account id, external id), as they are stored now."""
    found: dict[tuple[int, str], _Stored] = {}
    for account_id in {k[0] for k in keys}:
        ids = sorted({k[1] for k in keys if k[0] == account_id})
        for start in range(0, len(ids), 500):
            result = await session.execute(
                select(ChatGroup).where(
                    col(ChatGroup.account_id) == account_id,
                    col(ChatGroup.external_id).in_(ids[start : start + 500]),
                )
            )
            for g in result.scalars():
                found[(account_id, g.external_id)] = _Stored(
                    pk(g.id), g.unit_id, g.mode, list(g.admins), g.status
                )
    return found


async def list_groups(
    session: AsyncSession,
    *,
    today: date,
    unit_code: str | None = None,
    platform: str | None = None,
    status: str | None = None,
) -> list[GroupInfo]:
    query = (
        select(ChatGroup, col(Unit.code), col(Account.name))
        .join(Unit, col(Unit.id) == col(ChatGroup.unit_id))
        .join(Account, col(Account.id) == col(ChatGroup.account_id))
        .order_by(col(ChatGroup.id))
    )
    if platform:
        query = query.where(col(ChatGroup.platform) == check_platform(platform))
    if status:
        query = query.where(col(ChatGroup.status) == status)
    rows = (await session.execute(query)).all()
    if unit_code:
        tree = await load_tree(session, today)
        inside = {n.id for n in tree.subtree(tree.get(unit_code).id)}
        rows = [r for r in rows if r[0].unit_id in inside]
    return [GroupInfo.of(group, code, account) for group, code, account in rows]
