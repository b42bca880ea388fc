"""``cns init``, ``units``, ``tiers``, ``users`` and ``audit``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from broadcaster.bootstrap import InitResult, initialise_reporting_key
from broadcaster.cli.base import emit, run, state, table
from broadcaster.directory import audit, users
from broadcaster.domain.results import as_dict
from broadcaster.domain.timeutil import parse_date, today
from broadcaster.storage.app import App
from broadcaster.storage.db import describe_url
from broadcaster.units.aliases import AliasImport, import_aliases
from broadcaster.units.importer import ImportReport, import_units
from broadcaster.units.tiers import TierList, list_tiers
from broadcaster.units.tree import TreeNode, TreeOutline, outline

FILE = click.Path(path_type=Path, dir_okay=False)


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(units_group)
    cli.add_command(tiers_group)
    cli.add_command(users_group)
    cli.add_command(audit_command)


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the database, or upgrade it in place (data is kept)."""
    settings = state(ctx).settings

    async def work(_: App) -> tuple[str | None, str | None, bool]:
        app, before, after, key_created = await initialise_reporting_key(settings)
        await app.close()
        return before, after, key_created

    before, after, key_created = run(ctx, work, check_schema=False)
    result = InitResult(describe_url(settings.database_url), before, after)
    verb = (
        "created" if before is None else ("already current" if before == after else f"upgraded from {before}")
    )
    emit(ctx, result, f"database {result.database}: {verb} (schema {after})")
    if key_created and before is not None and not settings.link_secret:
        click.echo(  # the database ran without a key until now
            "cns: note: a random link key is now stored with the database: tracked and relay "
            "confirmation links sent before were keyed by a guessable fallback and no longer open",
            err=True,
        )


@click.group("units")
def units_group() -> None:
    """Administrative units and their tree over time."""


@units_group.command("import")
@click.argument("file", type=FILE)
@click.option(
    "--valid-from", "valid_from", required=True, help="Date the structure takes effect (YYYY-MM-DD)."
)
@click.option("--mapping", type=FILE, help="Reorganisation: CSV old_code,new_code (closes what it replaces).")
@click.pass_context
def units_import(ctx: click.Context, file: Path, valid_from: str, mapping: Path | None) -> None:
    """Import units from FILE (columns code,name,type,level,parent_code)."""
    day = parse_date(valid_from)

    async def work(app: App) -> ImportReport:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            actor.require(users.Permission.MANAGE_UNITS)
            report = await import_units(session, file, day, mapping)
            await audit.record(
                session,
                actor.name,
                "units.import",
                "unit",
                file.name,
                after={**as_dict(report), "mapping": mapping.name if mapping else None},
            )
            return report

    report = run(ctx, work)
    emit(
        ctx,
        report,
        f"imported {file.name} from {day}: {report.added} added, {report.changed} changed, "
        f"{report.unchanged} unchanged, {report.moved} moved, {report.closed} closed, "
        f"{report.successions} successions",
    )


@units_group.command("aliases")
@click.argument("file", type=FILE)
@click.option("--as-of", "as_of", help="Resolve the codes on this date (default: today).")
@click.pass_context
def units_aliases(ctx: click.Context, file: Path, as_of: str | None) -> None:
    """Import accepted name variants (columns code,alias[,note]) used by `groups check`."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> AliasImport:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            actor.require(users.Permission.MANAGE_UNITS)
            summary = await import_aliases(session, file, day)
            await audit.record(session, actor.name, "units.aliases", "unit", file.name, after=summary)
            return summary

    summary = run(ctx, work)
    emit(ctx, summary, f"imported {file.name}: {summary.added} aliases added ({summary.rows} rows)")


@units_group.command("tree")
@click.option("--as-of", "as_of", help="Show the tree on this date (default: today).")
@click.option("--root", "root", help="Start at this unit code (default: every top unit).")
@click.option("--depth", type=click.IntRange(min=0), help="Show at most this many levels below the root.")
@click.pass_context
def units_tree(ctx: click.Context, as_of: str | None, root: str | None, depth: int | None) -> None:
    """Print the unit tree as it stood on a date, with the unit count per level."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> TreeOutline:
        async with app.transaction() as session:
            return await outline(session, day, root, depth)

    result = run(ctx, work)
    lines = [line for node in result.tree for line in _tree_lines(node)]
    summary = ", ".join(f"{level}: {n}" for level, n in result.counts.items()) or "no units"
    lines.append(f"-- {day}: {summary}")
    emit(ctx, result, lines)


def _tree_lines(node: TreeNode, indent: int = 0) -> Iterator[str]:
    yield f"{'  ' * indent}{node.code}  {node.name}  [{node.level}]"
    for child in node.children or ():
        yield from _tree_lines(child, indent + 1)


@click.group("tiers")
def tiers_group() -> None:
    """The tier schema (ordered levels with effective dates)."""


@tiers_group.command("list")
@click.option("--as-of", "as_of", help="Date (default: today).")
@click.pass_context
def tiers_list(ctx: click.Context, as_of: str | None) -> None:
    """List the tier levels in force on a date, top first."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> TierList:
        async with app.transaction() as session:
            return await list_tiers(session, day)

    result = run(ctx, work)
    emit(ctx, result, table(["rank", "name", "label"], [(t.rank, t.name, t.label) for t in result.tiers]))


@click.group("users")
def users_group() -> None:
    """People who act in the system, with a role and a unit scope."""


@users_group.command("add")
@click.argument("name")
@click.option(
    "--role", required=True, type=click.Choice(users.ROLES), help="admin, editor, approver or viewer."
)
@click.option("--scope", help="Unit code of the subtree the user acts on (default: everything).")
@click.option("--full-name", default="", help="The person's full name.")
@click.pass_context
def users_add(ctx: click.Context, name: str, role: str, scope: str | None, full_name: str) -> None:
    """Add a user. The first user of a new database must be an unscoped admin and needs no --as."""

    async def work(app: App) -> users.UserInfo:
        async with (
            users.refusals_audited(app, app.settings.user, "user.add", "user", name),
            app.transaction() as session,
        ):
            user = await users.add_user(
                session, app.settings.user, name, role, scope_code=scope, full_name=full_name, today=today()
            )
            return users.UserInfo.of(user, scope)

    emit(ctx, run(ctx, work), f"added user {name} ({role}, scope {scope or 'everything'})")


@users_group.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users."""

    async def work(app: App) -> list[users.UserInfo]:
        async with app.transaction() as session:
            return await users.list_users(session)

    rows = run(ctx, work)
    emit(
        ctx,
        rows,
        table(
            ["name", "role", "scope", "full_name", "active"],
            [(u.name, u.role, u.scope, u.full_name, u.active) for u in rows],
        ),
    )


@click.command("audit")
@click.option("--entity", help="Only this kind of object (unit, account, group, user, content, dispatch).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def audit_command(ctx: click.Context, entity: str | None, limit: int) -> None:
    """Show the latest audit log entries (who, what, when, before/after)."""

    async def work(app: App) -> list[audit.AuditRecord]:
        async with app.transaction() as session:
            return await audit.log(session, entity=entity, limit=limit)

    rows = run(ctx, work)
    emit(
        ctx,
        rows,
        table(
            ["at", "actor", "action", "entity", "id", "after"],
            [(e.at, e.actor, e.action, e.entity, e.id, e.after) for e in rows],
        ),
    )


@users_group.command("token")
@click.argument("name")
@click.option("--label", default="api", show_default=True, help="What the token is for.")
@click.pass_context
def users_token(ctx: click.Context, name: str, label: str) -> None:
    """Issue an API token acting as NAME (shown once; only its hash is stored)."""

    async def work(app: App) -> users.IssuedToken:
        async with (
            users.refusals_audited(app, app.settings.user, "user.token", "user", name),
            app.transaction() as s,
        ):
            actor = await users.get_actor(s, state(ctx).settings.user) if state(ctx).settings.user else None
            return await users.issue_token(s, actor, name, label, today=today())

    issued = run(ctx, work)
    emit(
        ctx,
        issued,
        [issued.token, "Keep it secret: it is shown only once. Send it as: Authorization: Bearer ..."],
    )
