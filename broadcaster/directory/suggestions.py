"""Suggested registrations: a group our bot was added to, titled by the CNS convention but not
registered yet (``cns serve`` records them from the platforms' bot-added events, matched to a unit by
its title). An admin lists them, accepts one (it becomes a group of its unit, through the same checks
as ``cns groups add``) or dismisses it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit, groups
from broadcaster.directory.users import Actor, Permission
from broadcaster.domain.errors import Conflict, InputError, NotFound
from broadcaster.domain.models import Account, GroupSuggestion, Unit, pk
from broadcaster.domain.states import GroupMode, SuggestionStatus, values_of
from broadcaster.units.tree import load_tree

STATUSES = values_of(SuggestionStatus)


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A suggested registration (``unit``/``unit_name``: the unit its title matched, or None)."""

    id: int
    account: str
    platform: str
    external_id: str
    title: str
    unit: str | None
    unit_name: str | None
    match: str
    status: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Dismissed:
    """``cns groups dismiss``: the suggestion and its new status."""

    id: int
    status: str


async def list_suggestions(
    session: AsyncSession, actor: Actor, *, today: date, status: str | None = SuggestionStatus.PENDING
) -> list[Suggestion]:
    """Suggestions the actor may act on: matched to a unit in their subtree; unmatched ones only for
    actors without a scope (nobody below the province can tell where they belong)."""
    actor.require(Permission.MANAGE_GROUPS)
    query = (
        select(GroupSuggestion, col(Account.name), col(Unit.code), col(Unit.name))
        .join(Account, col(Account.id) == col(GroupSuggestion.account_id))
        .outerjoin(Unit, col(Unit.id) == col(GroupSuggestion.unit_id))
        .order_by(col(GroupSuggestion.at), col(GroupSuggestion.id))
    )
    if status is not None:
        query = query.where(col(GroupSuggestion.status) == status)
    tree = await load_tree(session, today) if actor.scope_unit_id is not None else None
    out: list[Suggestion] = []
    for suggestion, account, code, name in (await session.execute(query)).all():
        if tree is not None and (
            suggestion.unit_id is None
            or actor.scope_unit_id not in tree.nodes
            or not tree.is_within(suggestion.unit_id, actor.scope_unit_id)
        ):
            continue
        out.append(
            Suggestion(
                pk(suggestion.id),
                account,
                suggestion.platform,
                suggestion.external_id,
                suggestion.title,
                code,
                name,
                suggestion.match,
                suggestion.status,
                suggestion.at,
            )
        )
    return out


async def _pending(session: AsyncSession, suggestion_id: int) -> GroupSuggestion:
    suggestion = await session.get(GroupSuggestion, suggestion_id)
    if suggestion is None:
        raise NotFound(f"no group suggestion {suggestion_id}")
    if suggestion.status != SuggestionStatus.PENDING:
        raise Conflict(f"group suggestion {suggestion_id} is already {suggestion.status}")
    return suggestion


async def accept(
    session: AsyncSession,
    actor: Actor,
    suggestion_id: int,
    *,
    today: date,
    unit_code: str | None = None,
    mode: str = GroupMode.DIRECT,
    admins: str = "",
) -> groups.GroupInfo:
    """Register the suggested group for its matched unit (or ``unit_code``, which overrides a wrong or
    missing match). The usual checks apply: scope, unit alive today, relay admins."""
    suggestion = await _pending(session, suggestion_id)
    if unit_code is None:
        if suggestion.unit_id is None:
            raise InputError(
                f"group suggestion {suggestion_id} ({suggestion.title!r}) matched no unit: give --unit CODE"
            )
        unit_code = (
            await session.execute(select(col(Unit.code)).where(col(Unit.id) == suggestion.unit_id))
        ).scalar_one()
    account = await session.get(Account, suggestion.account_id)
    assert account is not None  # a foreign key
    group = await groups.add_group(
        session,
        actor,
        unit_code=unit_code,
        account_name=account.name,
        external_id=suggestion.external_id,
        title=suggestion.title,
        mode=mode,
        admins=admins,
        today=today,
    )
    suggestion.status = SuggestionStatus.ACCEPTED
    await audit.record(
        session,
        actor.name,
        "group_suggestion.accept",
        "group_suggestion",
        suggestion.id,
        after={"group_id": group.id, "unit": unit_code, "matched": suggestion.match},
    )
    return groups.GroupInfo.of(group, unit_code, account.name)


async def dismiss(session: AsyncSession, actor: Actor, suggestion_id: int, *, today: date) -> Dismissed:
    """Not one of ours (a test group, a mistaken title): no longer listed. Adding the bot again to the
    group suggests it again."""
    actor.require(Permission.MANAGE_GROUPS)
    suggestion = await _pending(session, suggestion_id)
    if actor.scope_unit_id is not None:
        if suggestion.unit_id is None:
            raise InputError("only an admin without a scope may dismiss a suggestion that matched no unit")
        actor.require_within(await load_tree(session, today), suggestion.unit_id, "dismiss suggestion")
    suggestion.status = SuggestionStatus.DISMISSED
    await audit.record(
        session,
        actor.name,
        "group_suggestion.dismiss",
        "group_suggestion",
        suggestion.id,
        before={"title": suggestion.title, "external_id": suggestion.external_id},
    )
    return Dismissed(pk(suggestion.id), suggestion.status)
