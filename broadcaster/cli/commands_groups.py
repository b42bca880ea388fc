"""``cns accounts`` and ``cns groups``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from broadcaster.bootstrap import WebhookRegistration, register_webhook
from broadcaster.cli.base import emit, run, table
from broadcaster.directory import accounts, groups, suggestions, users
from broadcaster.directory.group_check import CheckReport, check_groups
from broadcaster.domain.errors import InputError
from broadcaster.domain.platforms import PLATFORMS
from broadcaster.domain.states import GroupMode, SuggestionStatus
from broadcaster.domain.timeutil import parse_date, today
from broadcaster.storage.app import App

FILE = click.Path(path_type=Path, dir_okay=False)


def register(cli: click.Group) -> None:
    cli.add_command(accounts_group)
    cli.add_command(groups_group)


@click.group("accounts")
def accounts_group() -> None:
    """Platform accounts (bot, OA, page, webhook endpoint)."""


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{what} {value!r} must look like KEY=VALUE")
        out[key.strip()] = val.strip()
    return out


@accounts_group.command("add")
@click.argument("name")
@click.option("--platform", required=True, type=click.Choice(PLATFORMS))
@click.option("--secret", "secret", help="Main credential as a reference: env:VARIABLE or file:KEY.")
@click.option(
    "--extra-secret",
    "extra",
    multiple=True,
    metavar="NAME=REF",
    help="Another named secret reference (e.g. app_secret=env:FB_APP_SECRET).",
)
@click.option("--base-url", help="API base URL (a self-hosted Bot API server, the sandbox).")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE", help="Other non-secret settings.")
@click.pass_context
def accounts_add(
    ctx: click.Context,
    name: str,
    platform: str,
    secret: str | None,
    extra: tuple[str, ...],
    base_url: str | None,
    options: tuple[str, ...],
) -> None:
    """Add an account. Secrets are references; their values never enter the database."""
    settings: dict[str, Any] = _pairs(options, "setting")
    if base_url:
        settings["base_url"] = base_url

    async def work(app: App) -> accounts.AccountInfo:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            account = await accounts.add_account(
                session,
                actor,
                name,
                platform,
                secret_ref=secret,
                extra_secrets=_pairs(extra, "secret"),
                settings=settings,
                secrets_file=app.settings.secrets_file,
            )
            return accounts.AccountInfo.of(account, app.settings.secrets_file)

    data = run(ctx, work)
    emit(ctx, data, f"added {platform} account {name}")


@accounts_group.command("list")
@click.pass_context
def accounts_list(ctx: click.Context) -> None:
    """List accounts (secrets shown as references, with whether they resolve)."""

    async def work(app: App) -> list[accounts.AccountInfo]:
        async with app.transaction() as session:
            return await accounts.account_list(session, app.settings.secrets_file)

    rows = run(ctx, work)
    lines = table(
        ["name", "platform", "status", "settings", "secrets"],
        [
            (
                a.name,
                a.platform,
                a.status,
                a.settings,
                ", ".join(
                    f"{k}={v.ref} ({'set' if v.available else 'missing'})" for k, v in a.secrets.items()
                ),
            )
            for a in rows
        ],
    )
    emit(ctx, rows, lines)


@click.group("groups")
def groups_group() -> None:
    """Chat groups, pages and endpoints of units."""


@groups_group.command("add")
@click.option("--unit", "unit_code", required=True, help="Unit code.")
@click.option("--account", "account", required=True, help="Account name.")
@click.option("--external-id", required=True, help="The platform's id of the group.")
@click.option("--title", required=True, help="The group's title on the platform.")
@click.option("--mode", type=click.Choice(groups.MODES), default=GroupMode.DIRECT.value, show_default=True)
@click.option("--admins", default="", help='"Name=channel:address; ..." (needed for relay).')
@click.pass_context
def groups_add(
    ctx: click.Context, unit_code: str, account: str, external_id: str, title: str, mode: str, admins: str
) -> None:
    """Register one group."""

    async def work(app: App) -> groups.GroupInfo:
        async with (
            users.refusals_audited(app, app.settings.user, "group.add", "group", f"{account}/{external_id}"),
            app.transaction() as session,
        ):
            actor = await users.get_actor(session, app.settings.user)
            group = await groups.add_group(
                session,
                actor,
                unit_code=unit_code,
                account_name=account,
                external_id=external_id,
                title=title,
                mode=mode,
                admins=admins,
                today=today(),
            )
            return groups.GroupInfo.of(group, unit_code, account)

    added = run(ctx, work)
    emit(ctx, added, f"added group {added.id} {title!r} for unit {unit_code}")


@groups_group.command("import")
@click.argument("file", type=FILE)
@click.option("--as-of", "as_of", help="Resolve unit codes on this date (default: today).")
@click.pass_context
def groups_import(ctx: click.Context, file: Path, as_of: str | None) -> None:
    """Import groups from FILE (columns: see `cns groups import --help` and the README)."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> groups.GroupImport:
        async with (
            users.refusals_audited(app, app.settings.user, "group.import", "group", file.name),
            app.transaction() as session,
        ):
            actor = await users.get_actor(session, app.settings.user)
            return await groups.import_groups(session, actor, file, day)

    summary = run(ctx, work)
    emit(ctx, summary, f"imported {file.name}: {summary.added} added, {summary.updated} updated")


groups_import.help = (groups_import.help or "") + "\n\n" + (groups.__doc__ or "").split("\n\n", 1)[1]


@groups_group.command("list")
@click.option("--unit", "unit_code", help="Only groups in this unit's subtree.")
@click.option("--platform", type=click.Choice(PLATFORMS))
@click.option("--status", type=click.Choice(groups.STATUSES))
@click.option("--as-of", "as_of", help="Date for the subtree (default: today).")
@click.pass_context
def groups_list(
    ctx: click.Context, unit_code: str | None, platform: str | None, status: str | None, as_of: str | None
) -> None:
    """List groups."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> list[groups.GroupInfo]:
        async with app.transaction() as session:
            return await groups.list_groups(
                session, today=day, unit_code=unit_code, platform=platform, status=status
            )

    rows = run(ctx, work)
    emit(
        ctx,
        rows,
        table(
            ["id", "unit", "platform", "account", "external_id", "title", "mode", "status"],
            [(g.id, g.unit, g.platform, g.account, g.external_id, g.title, g.mode, g.status) for g in rows],
        ),
    )


@groups_group.command("check")
@click.option("--as-of", "as_of", help="Check against the tree on this date (default: today).")
@click.pass_context
def groups_check(ctx: click.Context, as_of: str | None) -> None:
    """Check titles against the CNS convention; list units without a group, groups of units that no
    longer exist, and duplicates."""
    day = parse_date(as_of) if as_of else today()

    async def work(app: App) -> CheckReport:
        async with app.transaction() as session:
            return await check_groups(session, day)

    report = run(ctx, work)
    lines = [
        f"groups check on {day}: {report.groups} active groups, {report.ok} titles ok, "
        f"{report.problems} problems"
    ]
    for m in report.mismatched:
        hint = f"; most likely {m.likely_unit.code} {m.likely_unit.name}" if m.likely_unit else ""
        lines.append(
            f"  title     group {m.group_id} {m.title!r} for {m.unit.code} "
            f"{m.unit.name}: {m.reason}, expected {m.expected_title!r}{hint}"
        )
    for g in report.groups_of_gone_units:
        succ = ", ".join(f"{s.code} {s.name}" for s in g.successors) or "no successor recorded"
        lines.append(
            f"  gone      group {g.group_id} {g.title!r}: unit {g.unit.code} "
            f"{g.unit.name} ended {g.unit_ended} (now: {succ})"
        )
    for d in report.duplicates:
        lines.append(f"  duplicate {d.kind} on {d.platform}: groups {list(d.group_ids)}")
    missing = report.units_without_group
    if missing:
        shown = ", ".join(f"{u.code} {u.name}" for u in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        lines.append(f"  no group  {len(missing)} units: {shown}{more}")
    emit(ctx, report, lines)


@groups_group.command("suggestions")
@click.option(
    "--status",
    type=click.Choice(suggestions.STATUSES),
    default=SuggestionStatus.PENDING.value,
    show_default=True,
)
@click.pass_context
def groups_suggestions(ctx: click.Context, status: str) -> None:
    """Groups the bot was added to that are not registered yet (from `cns serve`), with the unit their
    title matched; accept or dismiss them with `cns groups accept|dismiss ID`."""

    async def work(app: App) -> list[suggestions.Suggestion]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            return await suggestions.list_suggestions(session, actor, today=today(), status=status)

    rows = run(ctx, work)
    emit(
        ctx,
        rows,
        table(
            ["id", "account", "external_id", "title", "unit", "unit_name", "match", "at"],
            [(g.id, g.account, g.external_id, g.title, g.unit, g.unit_name, g.match, g.at) for g in rows],
        )
        if rows
        else f"no {status} group suggestions",
    )


@groups_group.command("accept")
@click.argument("suggestion_id", type=int)
@click.option("--unit", "unit_code", help="Register for this unit instead of the matched one.")
@click.option("--mode", type=click.Choice(groups.MODES), default=GroupMode.DIRECT.value, show_default=True)
@click.option("--admins", default="", help='"Name=channel:address; ..." (needed for relay).')
@click.pass_context
def groups_accept(
    ctx: click.Context, suggestion_id: int, unit_code: str | None, mode: str, admins: str
) -> None:
    """Register a suggested group (see `cns groups suggestions`)."""

    async def work(app: App) -> groups.GroupInfo:
        async with (
            users.refusals_audited(
                app, app.settings.user, "group_suggestion.accept", "group_suggestion", suggestion_id
            ),
            app.transaction() as session,
        ):
            actor = await users.get_actor(session, app.settings.user)
            return await suggestions.accept(
                session,
                actor,
                suggestion_id,
                today=today(),
                unit_code=unit_code,
                mode=mode,
                admins=admins,
            )

    added = run(ctx, work)
    emit(ctx, added, f"added group {added.id} {added.title!r} for unit {added.unit}")


@groups_group.command("dismiss")
@click.argument("suggestion_id", type=int)
@click.pass_context
def groups_dismiss(ctx: click.Context, suggestion_id: int) -> None:
    """Drop a suggested group that is not one of ours."""

    async def work(app: App) -> suggestions.Dismissed:
        async with (
            users.refusals_audited(
                app, app.settings.user, "group_suggestion.dismiss", "group_suggestion", suggestion_id
            ),
            app.transaction() as session,
        ):
            actor = await users.get_actor(session, app.settings.user)
            return await suggestions.dismiss(session, actor, suggestion_id, today=today())

    emit(ctx, run(ctx, work), f"dismissed group suggestion {suggestion_id}")


@accounts_group.command("webhook")
@click.argument("name")
@click.option("--delete", is_flag=True, help="Telegram: stop sending updates to cns serve.")
@click.pass_context
def accounts_webhook(ctx: click.Context, name: str, delete: bool) -> None:
    """Point account NAME's platform at `cns serve` ({CNS_PUBLIC_URL}/hooks/{platform}/{NAME}).

    Telegram is registered here (setWebhook with the 'hook' secret as the secret token, then what
    Telegram reports); Zalo, Facebook and bridges are set in their consoles: this says where."""

    async def work(app: App) -> WebhookRegistration:
        return await register_webhook(app, name, delete=delete)

    done = run(ctx, work)
    info = done.info
    if info is not None:
        state = "registered" if done.registered else "removed"
        text = (
            f"{done.platform} webhook of {name} {state}: {info.url or '(none)'}; "
            f"{info.pending_update_count} updates waiting; updates: {', '.join(info.allowed_updates)}"
        )
        if info.last_error_message:
            when = info.last_error_date.isoformat() if info.last_error_date else None
            text += f"\nlast error reported by Telegram ({when}): {info.last_error_message}"
    else:
        text = f"{done.platform} webhook of {name}: {done.url}\n{done.where}"
    emit(ctx, done, text)
