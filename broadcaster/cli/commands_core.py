"""``cns init``, ``units``, ``tiers``, ``users`` and ``audit``."""

from __future__ import annotations

from pathlib import Path

import click

from broadcaster.bootstrap import initialise
from broadcaster.cli.base import emit, run, state, table
from broadcaster.directory import audit, users
from broadcaster.domain.timeutil import parse_date, today
from broadcaster.storage.app import App
from broadcaster.storage.db import describe_url
from broadcaster.units.aliases import import_aliases
from broadcaster.units.importer import import_units
from broadcaster.units.tiers import tiers_as_of
from broadcaster.units.tree import load_tree

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

    async def work(_: App) -> tuple[str | None, str | None]:
        app, before, after = await initialise(settings)
        await app.close()
        return before, after

    before, after = run(ctx, work, check_schema=False)
    where = describe_url(settings.database_url)
    verb = (
        "created" if before is None else ("already current" if before == after else f"upgraded from {before}")
    )
    emit(
        ctx,
        {"database": where, "before": before, "after": after},
        f"database {where}: {verb} (schema {after})",
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

    async def work(app: App) -> dict[str, object]:
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
                after={**report.to_dict(), "mapping": mapping.name if mapping else None},
            )
            return report.to_dict()

    report = run(ctx, work)
    emit(
        ctx,
        report,
        f"imported {file.name} from {day}: {report['added']} added, {report['changed']} changed, "
        f"{report['unchanged']} unchanged, {report['moved']} moved, {report['closed']} closed, "
        f"{report['successions']} successions",
    )


@units_group.command("aliases")
@click.argument("file", type=FILE)
@click.option("--as-of", "as_of", help="Resolve the codes on this date (default: today).")
@click.pass_context
def units_aliases(ctx: click.Context, file: Path, as_of: str | None) -> None:
    """Import accepted name variants (columns code,alias[,note]) used by `groups check`."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> dict[str, int]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            actor.require(users.Permission.MANAGE_UNITS)
            summary = await import_aliases(session, file, day)
            await audit.record(session, actor.name, "units.aliases", "unit", file.name, after=summary)
            return summary

    summary = run(ctx, work)
    emit(ctx, summary, f"imported {file.name}: {summary['added']} aliases added ({summary['rows']} rows)")


@units_group.command("tree")
@click.option("--as-of", "as_of", help="Show the tree on this date (default: today).")
@click.option("--root", "root", help="Start at this unit code (default: every top unit).")
@click.option("--depth", type=click.IntRange(min=0), help="Show at most this many levels below the root.")
@click.pass_context
def units_tree(ctx: click.Context, as_of: str | None, root: str | None, depth: int | None) -> None:
    """Print the unit tree as it stood on a date, with the unit count per level."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> tuple[dict[str, object], list[str]]:
        async with app.transaction() as session:
            tree = await load_tree(session, day)
        roots = [tree.get(root)] if root else tree.roots
        counts = tree.counts(n for r in roots for n in tree.subtree(r.id))
        lines = [line for r in roots for line in tree.render(r.id, depth)]
        summary = ", ".join(f"{level}: {n}" for level, n in counts.items()) or "no units"
        lines.append(f"-- {day}: {summary}")
        data = {
            "as_of": day.isoformat(),
            "counts": counts,
            "units": sum(counts.values()),
            "tree": [tree.to_dict(r.id, depth) for r in roots],
        }
        return data, lines

    data, lines = run(ctx, work)
    emit(ctx, data, lines)


@click.group("tiers")
def tiers_group() -> None:
    """The tier schema (ordered levels with effective dates)."""


@tiers_group.command("list")
@click.option("--as-of", "as_of", help="Date (default: today).")
@click.pass_context
def tiers_list(ctx: click.Context, as_of: str | None) -> None:
    """List the tier levels in force on a date, top first."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> list[dict[str, object]]:
        async with app.transaction() as session:
            schema = await tiers_as_of(session, day)
        return [{"name": t.name, "rank": t.rank, "label": t.label} for t in schema.tiers]

    rows = run(ctx, work)
    emit(ctx, {"as_of": day.isoformat(), "tiers": rows}, table(rows, ["rank", "name", "label"]))


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

    async def work(app: App) -> dict[str, object]:
        async with app.transaction() as session:
            user = await users.add_user(
                session, app.settings.user, name, role, scope_code=scope, full_name=full_name, today=today()
            )
            return users.user_dict(user, scope)

    data = run(ctx, work)
    emit(ctx, data, f"added user {name} ({role}, scope {scope or 'everything'})")


@users_group.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users."""

    async def work(app: App) -> list[dict[str, object]]:
        async with app.transaction() as session:
            return await users.list_users(session)

    rows = run(ctx, work)
    emit(ctx, rows, table(rows, ["name", "role", "scope", "full_name", "active"]))


@click.command("audit")
@click.option("--entity", help="Only this kind of object (unit, account, group, user, content, dispatch).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def audit_command(ctx: click.Context, entity: str | None, limit: int) -> None:
    """Show the latest audit log entries (who, what, when, before/after)."""

    async def work(app: App) -> list[dict[str, object]]:
        async with app.transaction() as session:
            found = await audit.entries(session, entity=entity, limit=limit)
        return [
            {
                "at": e.at.isoformat(timespec="seconds"),
                "actor": e.actor,
                "action": e.action,
                "entity": e.entity,
                "id": e.entity_id,
                "before": e.before,
                "after": e.after,
            }
            for e in found
        ]

    rows = run(ctx, work)
    emit(ctx, rows, table(rows, ["at", "actor", "action", "entity", "id", "after"]))


@users_group.command("token")
@click.argument("name")
@click.option("--label", default="api", show_default=True, help="What the token is for.")
@click.pass_context
def users_token(ctx: click.Context, name: str, label: str) -> None:
    """Issue an API token acting as NAME (shown once; only its hash is stored)."""

    async def work(app: App) -> dict[str, str]:
        async with app.transaction() as s:
            actor = await users.get_actor(s, state(ctx).settings.user) if state(ctx).settings.user else None
            token = await users.issue_token(s, actor, name, label)
        return {"user": name, "label": label, "token": token}

    data = run(ctx, work)
    emit(
        ctx,
        data,
        [data["token"], "Keep it secret: it is shown only once. Send it as: Authorization: Bearer ..."],
    )
