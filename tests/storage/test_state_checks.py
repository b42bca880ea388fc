"""States are enums, the database holds them to their values, and the code writes no others.

Every state, status and mode column has a CHECK constraint built from its enum
(:mod:`broadcaster.domain.states`); the database refuses anything else on SQLite and PostgreSQL, also
through an upgrade (a stored value outside the lists stops it, and nothing is half done). The named
sets hold members of their enum, and no quoted state literal is left where the code reads or writes a
state (so a new value cannot slip in beside the enum).
"""

from __future__ import annotations

import ast
from datetime import date
from enum import StrEnum
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from broadcaster.directory import groups, suggestions
from broadcaster.dispatch.outcomes import Outcome
from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.domain import states
from broadcaster.domain.errors import (
    AuthFailed,
    PermanentError,
    RateLimited,
    StorageError,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.models import (
    Account,
    Approval,
    Campaign,
    ChatGroup,
    ContentItem,
    ContentRevision,
    Delivery,
    Dispatch,
    GroupStatusChange,
    GroupSuggestion,
    InboundEvent,
    Interaction,
    ReportPost,
    Unit,
    User,
    pk,
)
from broadcaster.domain.ports import Target
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import (
    AccountStatus,
    ApprovalDecision,
    CampaignStatus,
    ContentStatus,
    DeliveryState,
    DispatchStatus,
    GroupMode,
    GroupStatus,
    InboundEventStatus,
    ReportPostState,
    SuggestionStatus,
)
from broadcaster.editorial.workflow import TRANSITIONS
from broadcaster.inbound.processing import ProcessStats
from broadcaster.storage.app import App
from broadcaster.storage.schema import current_revision, downgrade, head_revision, upgrade
from tests.storage.test_migrations import _diff, database_checks, model_checks

ROOT = Path(__file__).resolve().parents[2]
STATE_COLUMNS = {"state", "status", "mode", "previous", "decision"}
ENUMS: tuple[type[StrEnum], ...] = (
    AccountStatus,
    ApprovalDecision,
    CampaignStatus,
    ContentStatus,
    DeliveryState,
    DispatchStatus,
    GroupMode,
    GroupStatus,
    InboundEventStatus,
    ReportPostState,
    SuggestionStatus,
)
BEFORE_CHECKS = "0007"


def checked_columns() -> list[tuple[str, str, type[StrEnum]]]:
    """(table, column, enum) of every CHECK constraint the models declare."""
    out = []
    for table in SQLModel.metadata.tables.values():
        for c in table.constraints:
            if isinstance(c, CheckConstraint):
                column = str(c.name).removeprefix(f"ck_{table.name}_")
                out.append((table.name, column, c.info["states"]))
    return sorted(out, key=lambda t: (t[0], t[1]))


# --- the enums, the sets and the constraints agree ------------------------------------------------------


def test_every_state_column_is_checked_against_its_enum() -> None:
    checked = {(t, c): e for t, c, e in checked_columns()}
    state_columns = {
        (table.name, column.name)
        for table in SQLModel.metadata.tables.values()
        for column in table.columns
        if column.name in STATE_COLUMNS
    }
    assert set(checked) == state_columns
    assert len(checked) == 14
    assert set(checked.values()) == set(ENUMS)
    for (table, column), enum in checked.items():
        values = {m.value for m in enum}
        assert model_checks()[(table, f"ck_{table}_{column}")] == (column, frozenset(values))
        longest = max(len(v) for v in values)
        assert longest <= SQLModel.metadata.tables[table].c[column].type.length  # type: ignore[attr-defined]


def test_the_named_sets_hold_members_of_one_enum() -> None:
    sets = {name: value for name, value in vars(states).items() if isinstance(value, frozenset)}
    assert len(sets) >= 13
    for name, members in sets.items():
        kinds = {type(m) for m in members}
        assert len(kinds) == 1 and kinds <= set(ENUMS), name  # not empty, one enum, its members
    every = frozenset(DeliveryState)
    assert every == states.FINAL | states.UNFINISHED and not states.FINAL & states.UNFINISHED
    assert states.PENDING - {DeliveryState.UNKNOWN} == states.CLAIMABLE_WITHOUT_UNKNOWN
    assert states.PENDING < states.UNFINISHED
    assert {DeliveryState.SENDING} == states.UNFINISHED - states.PENDING
    assert states.SEND_SUCCEEDED < states.DELIVERED < states.DELIVERED_OR_RECALLED <= states.FINAL
    assert states.TRIED_AGAIN <= states.PENDING
    assert not states.DISPATCH_SENDING & states.DISPATCH_ENDED
    assert states.DISPATCH_FOLLOWED_UP & {DispatchStatus.PAUSED, DispatchStatus.CANCELLED} == set()
    assert frozenset(InboundEventStatus) == states.EVENT_OUTCOMES | states.EVENT_UNPROCESSED
    assert states.EVENT_FOR_ADMINS <= states.EVENT_OUTCOMES
    assert {str(s) for s in states.EVENT_OUTCOMES} == set(ProcessStats.__dataclass_fields__)


def test_what_the_code_writes_is_in_the_enums() -> None:
    now = utcnow()
    policy = RetryPolicy(max_attempts=2)
    for error, attempts in (
        (RateLimited("slow down", retry_after=3), 1),
        (TargetMigrated("moved", new_id="-100"), 1),
        (AuthFailed("401"), 1),
        (TargetGone("kicked"), 1),
        (PermanentError("400"), 1),
        (TransientError("502"), 1),
        (TransientError("502"), 2),
    ):
        assert isinstance(policy.decide(error, attempts, now).state, DeliveryState)
    assert set(TRANSITIONS) == set(ContentStatus)
    assert {to for actions in TRANSITIONS.values() for to in actions.values()} <= set(ContentStatus)
    assert Outcome(1, 1, 1).state in DeliveryState
    assert Target("telegram", "-1").mode in GroupMode
    assert tuple(GroupMode) == groups.MODES
    assert tuple(GroupStatus) == groups.STATUSES
    assert tuple(SuggestionStatus) == suggestions.STATUSES
    assert all(type(s) is str for s in (*groups.MODES, *suggestions.STATUSES))  # click matches by value
    defaults = {
        (Account, "status"): AccountStatus.ACTIVE,
        (ChatGroup, "mode"): GroupMode.DIRECT,
        (ChatGroup, "status"): GroupStatus.ACTIVE,
        (ReportPost, "state"): ReportPostState.SENDING,
        (ContentItem, "status"): ContentStatus.DRAFT,
        (Dispatch, "status"): DispatchStatus.PLANNED,
        (Delivery, "state"): DeliveryState.PLANNED,
        (InboundEvent, "status"): InboundEventStatus.PENDING,
        (GroupSuggestion, "status"): SuggestionStatus.PENDING,
        (Campaign, "status"): CampaignStatus.ACTIVE,
    }
    for (model, field), value in defaults.items():
        assert model.model_fields[field].default is value


# --- no quoted state literal is left in the code ---------------------------------------------------------

_VALUES = {m.value for enum in ENUMS for m in enum}


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value in _VALUES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_literal(e) for e in node.elts)
    return False


def _is_state(node: ast.AST) -> bool:
    """``x.state``, ``state``, ``col(X.state)``, ``_T.c.state``, ``row["state"]``..."""
    if isinstance(node, ast.Attribute):
        return node.attr in STATE_COLUMNS
    if isinstance(node, ast.Name):
        return node.id in STATE_COLUMNS
    if isinstance(node, ast.Call):
        return any(_is_state(a) for a in node.args)
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in STATE_COLUMNS
    return False


def _literals(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        found = False
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            found = any(_is_state(s) for s in sides) and any(_is_literal(s) for s in sides)
        elif isinstance(node, ast.keyword):
            found = node.arg in STATE_COLUMNS and _is_literal(node.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                else:
                    pairs = [(target, node.value)] if node.value is not None else []
                found = found or any(_is_state(t) and _is_literal(v) for t, v in pairs)
        elif isinstance(node, ast.Dict):
            found = any(
                isinstance(k, ast.Constant) and k.value in STATE_COLUMNS and _is_literal(v)
                for k, v in zip(node.keys, node.values, strict=True)
            )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            found = node.func.attr in {"in_", "not_in"} and any(_is_literal(a) for a in node.args)
        elif isinstance(node, ast.arguments):
            args = [*node.posonlyargs, *node.args]
            named = list(zip(args[len(args) - len(node.defaults) :], node.defaults, strict=True))
            named += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d]
            found = any(a.arg in STATE_COLUMNS and _is_literal(d) for a, d in named)
        if found:
            lines.append(getattr(node, "lineno", 0))
    return lines


def test_no_quoted_state_literal_is_left_in_the_code() -> None:
    """Where the code compares, assigns, filters or defaults a state, status or mode, it names an enum
    member (the migrations keep their own literal lists on purpose, and are not looked at)."""
    found = []
    for package in ("broadcaster", "scheduler", "content"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for line in _literals(ast.parse(path.read_text(encoding="utf-8"))):
                found.append(f"{path.relative_to(ROOT)}:{line}")
    assert found == []


def test_the_literal_finder_finds_them() -> None:
    code = """
x.state == "sent"
update(T).values(status="done")
g.status, g.note = "unreachable", "gone"
{"status": "approved"}
col(Delivery.state).in_(["queued", "sending"])
def f(mode: str = "relay"): ...
"""
    assert len(_literals(ast.parse(code))) == 6


# --- the database refuses other values --------------------------------------------------------------------


async def add_one_of_each(app: App) -> dict[str, int]:
    """A row in every table with a CHECK, and rows that refer to them (a rebuilt table keeps them)."""
    now = utcnow()
    async with app.transaction() as s:
        unit = Unit(
            code="12", name="Tỉnh Lai Châu", type="tỉnh", level="province", valid_from=date(2022, 1, 1)
        )
        user = User(name="admin", role="admin")
        account = Account(name="tg", platform="telegram")
        s.add_all([unit, user, account])
        await s.flush()
        group = ChatGroup(
            unit_id=pk(unit.id), platform="telegram", account_id=pk(account.id), external_id="-1", title="CNS"
        )
        item = ContentItem(author_id=pk(user.id))
        s.add_all([group, item])
        await s.flush()
        revision = ContentRevision(
            content_id=pk(item.id),
            number=1,
            title="t",
            body="b",
            category="c",
            sha256="0" * 64,
            author_id=pk(user.id),
        )
        s.add(revision)
        await s.flush()
        approval = Approval(
            content_id=pk(item.id),
            revision_id=pk(revision.id),
            revision_sha256=revision.sha256,
            decision=ApprovalDecision.APPROVED,
            user_id=pk(user.id),
        )
        s.add(approval)
        await s.flush()
        dispatch = Dispatch(
            key="k",
            content_id=pk(item.id),
            revision_id=pk(revision.id),
            revision_sha256=revision.sha256,
            approval_id=pk(approval.id),
            created_by=pk(user.id),
            scheduled_at=now,
            as_of=date(2026, 11, 28),
        )
        event = InboundEvent(account_id=pk(account.id), platform="telegram", key="1")
        s.add_all([dispatch, event])
        await s.flush()
        delivery = Delivery(
            dispatch_id=pk(dispatch.id),
            group_id=pk(group.id),
            unit_id=pk(unit.id),
            level="province",
            platform="telegram",
            mode=GroupMode.DIRECT,
        )
        s.add(delivery)
        await s.flush()
        s.add_all(
            [
                Interaction(
                    kind="reply",
                    platform="telegram",
                    group_id=group.id,
                    delivery_id=delivery.id,
                    dispatch_id=dispatch.id,
                    event_id=event.id,
                ),
                GroupStatusChange(
                    group_id=pk(group.id), previous=GroupStatus.ACTIVE, status=GroupStatus.UNREACHABLE
                ),
                ReportPost(month="2026-11", group_id=pk(group.id)),
                GroupSuggestion(account_id=pk(account.id), platform="telegram", external_id="-2", title="x"),
                Campaign(name="c", posts=[1], rrule="FREQ=WEEKLY", starts_at=now, created_by=pk(user.id)),
            ]
        )
    return await row_counts(app)


async def row_counts(app: App) -> dict[str, int]:
    """Rows per table of the models, of the tables the database has (a downgrade drops later ones)."""
    async with app.engine.connect() as conn:
        present = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    async with app.sessions() as s:
        return {
            name: int((await s.execute(select(func.count()).select_from(table))).scalar_one())
            for name, table in SQLModel.metadata.tables.items()
            if name in present
        }


def same_rows(now: dict[str, int], before: dict[str, int]) -> bool:
    """Every table of ``now`` has the rows it had ``before`` (tables created after 0008, dropped and
    created again around a downgrade, are left out: their rows go with them)."""
    return now == {name: before[name] for name in now}


async def test_the_database_refuses_a_value_outside_the_enum(app: App) -> None:
    await add_one_of_each(app)
    for table, column, enum in checked_columns():
        async with app.engine.begin() as conn:
            for value in enum:  # every value the enum has is accepted
                done = await conn.execute(text(f"UPDATE {table} SET {column} = :v"), {"v": value})
                assert done.rowcount == 1, (table, column)  # type: ignore[attr-defined]
        with pytest.raises(IntegrityError, match=f"ck_{table}_{column}"):
            async with app.engine.begin() as conn:
                await conn.execute(text(f"UPDATE {table} SET {column} = 'bogus'"))

    async def through_the_models() -> None:
        async with app.transaction() as s:
            delivery = (await s.execute(select(Delivery))).scalar_one()
            delivery.state = "delivered"

    with pytest.raises(IntegrityError, match="ck_delivery_state"):
        await through_the_models()


async def test_downgrade_and_upgrade_keep_every_row(app: App) -> None:
    """0008 rebuilds the tables on SQLite (batch mode) whose rows other rows refer to; both ways keep
    every row, and foreign keys are enforced again afterwards."""
    counts = await add_one_of_each(app)
    assert await downgrade(app.engine, BEFORE_CHECKS) == (head_revision(), BEFORE_CHECKS)
    async with app.engine.connect() as conn:
        assert not any(name.startswith("ck_") for _, name in await conn.run_sync(database_checks))
    kept = await row_counts(app)
    assert same_rows(kept, counts) and "delivery" in kept

    assert await upgrade(app.engine) == (BEFORE_CHECKS, head_revision())
    async with app.engine.connect() as conn:
        assert await conn.run_sync(database_checks) == model_checks()
        assert await conn.run_sync(_diff) == []  # indexes, keys and types of the rebuilt tables too
    again = await row_counts(app)
    assert set(again) == set(counts) and same_rows({name: again[name] for name in kept}, counts)
    with pytest.raises(IntegrityError):  # foreign keys still enforced (SQLite turned them off and on)
        async with app.engine.begin() as conn:
            await conn.execute(text("UPDATE delivery SET group_id = 999"))


async def test_an_upgrade_stops_at_a_stored_value_outside_the_lists(app: App) -> None:
    await add_one_of_each(app)
    await downgrade(app.engine, BEFORE_CHECKS)
    counts = await row_counts(app)
    async with app.engine.connect() as conn:
        before = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    async with app.engine.begin() as conn:
        await conn.execute(text("UPDATE delivery SET state = 'delivered'"))
    with pytest.raises(StorageError, match="ck_delivery_state"):
        await upgrade(app.engine)
    assert await current_revision(app.engine) == BEFORE_CHECKS
    async with app.engine.connect() as conn:  # nothing half done: no checks, no table left from a rebuild
        assert not any(name.startswith("ck_") for _, name in await conn.run_sync(database_checks))
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables == before and "alembic_version" in tables
    assert await row_counts(app) == counts

    async with app.engine.begin() as conn:
        await conn.execute(text("UPDATE delivery SET state = 'sent'"))
    assert await upgrade(app.engine) == (BEFORE_CHECKS, head_revision())
