"""``cns content ...`` and ``cns send``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from broadcaster.cli.base import emit, run, table
from broadcaster.directory import users
from broadcaster.dispatch import planning
from broadcaster.domain.errors import InputError
from broadcaster.domain.timeutil import parse_time
from broadcaster.editorial import workflow
from broadcaster.storage.app import App

READABLE = click.Path(path_type=Path, dir_okay=False, exists=False)


def register(cli: click.Group) -> None:
    cli.add_command(content_group)
    cli.add_command(send)


def _body(body: str | None, body_file: Path | None, required: bool) -> str | None:
    if body is not None and body_file is not None:
        raise InputError("give either --body or --body-file, not both")
    if body_file is not None:
        try:
            return body_file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{body_file}: not UTF-8 text") from None
        except OSError as exc:
            raise InputError(f"{body_file}: cannot read ({exc.strerror or exc})") from None
    if body is None and required:
        raise InputError("the body is required: --body TEXT or --body-file FILE (Markdown subset)")
    return body


@click.group("content")
def content_group() -> None:
    """Guidance content: revisions and the approval workflow."""


@content_group.command("new")
@click.option("--title", required=True)
@click.option("--body", help="Body in the Markdown subset (see the README).")
@click.option("--body-file", type=READABLE, help="Read the body from this UTF-8 file.")
@click.option(
    "--category",
    required=True,
    help="chính quyền số, kinh tế số, xã hội số, giáo dục số (or their slugs), or a custom category.",
)
@click.option("--link", "links", multiple=True, help="A related link (repeatable).")
@click.option("--attach", "files", multiple=True, type=READABLE, help="Attach a file (repeatable).")
@click.pass_context
def content_new(
    ctx: click.Context,
    title: str,
    body: str | None,
    body_file: Path | None,
    category: str,
    links: tuple[str, ...],
    files: tuple[Path, ...],
) -> None:
    """Create a content item (draft, revision 1)."""
    text = _body(body, body_file, required=True)
    assert text is not None

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            item, revision = await workflow.create(
                session,
                actor,
                title=title,
                body=text,
                category=category,
                links=links,
                files=files,
                max_bytes=app.settings.attachment_max_bytes,
            )
            return {
                "id": item.id,
                "status": item.status,
                "revision": revision.number,
                "sha256": revision.sha256,
            }

    data = run(ctx, work)
    emit(ctx, data, f"content {data['id']} created (draft, revision 1, sha256 {data['sha256'][:12]})")


@content_group.command("edit")
@click.argument("content_id", type=int)
@click.option("--title")
@click.option("--body")
@click.option("--body-file", type=READABLE)
@click.option("--category")
@click.option("--link", "links", multiple=True, help="Replace the links (repeatable).")
@click.option("--attach", "files", multiple=True, type=READABLE, help="Add a file (repeatable).")
@click.option("--drop-attachments", is_flag=True, help="Remove the current attachments first.")
@click.pass_context
def content_edit(
    ctx: click.Context,
    content_id: int,
    title: str | None,
    body: str | None,
    body_file: Path | None,
    category: str | None,
    links: tuple[str, ...],
    files: tuple[Path, ...],
    drop_attachments: bool,
) -> None:
    """Add a new revision; the item returns to draft and needs a new approval."""
    text = _body(body, body_file, required=False)

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            revision = await workflow.edit(
                session,
                actor,
                content_id,
                title=title,
                body=text,
                category=category,
                links=links or None,
                files=files,
                drop_attachments=drop_attachments,
                max_bytes=app.settings.attachment_max_bytes,
            )
            return {
                "id": content_id,
                "status": "draft",
                "revision": revision.number,
                "sha256": revision.sha256,
            }

    data = run(ctx, work)
    emit(ctx, data, f"content {content_id}: revision {data['revision']} (draft)")


def _simple(action: str, doc: str) -> click.Command:
    @click.command(action, help=doc)
    @click.argument("content_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, content_id: int) -> None:
        async def work(app: App) -> dict[str, Any]:
            async with app.transaction() as session:
                actor = await users.get_actor(session, app.settings.user)
                item = await getattr(workflow, action)(session, actor, content_id)
                return {"id": item.id, "status": item.status, "revision": item.latest_revision}

        data = run(ctx, work)
        emit(ctx, data, f"content {content_id}: {data['status']}")

    return command


content_group.add_command(_simple("submit", "Submit the latest revision for approval."))
content_group.add_command(_simple("archive", "Archive a content item."))


@content_group.command("approve")
@click.argument("content_id", type=int)
@click.option("--revision", type=int, help="Fail unless this is the latest revision (what you reviewed).")
@click.pass_context
def content_approve(ctx: click.Context, content_id: int, revision: int | None) -> None:
    """Approve the latest revision (pinned by its hash). Authors cannot approve their own revision."""

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            approval = await workflow.approve(session, actor, content_id, revision)
            return {
                "id": content_id,
                "status": "approved",
                "sha256": approval.revision_sha256,
                "by": actor.name,
            }

    data = run(ctx, work)
    emit(ctx, data, f"content {content_id}: approved (sha256 {data['sha256'][:12]}) by {data['by']}")


@content_group.command("reject")
@click.argument("content_id", type=int)
@click.option("--reason", required=True, help="Why (shown to the author).")
@click.pass_context
def content_reject(ctx: click.Context, content_id: int, reason: str) -> None:
    """Reject the submitted revision, with a reason."""

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            await workflow.reject(session, actor, content_id, reason)
            return {"id": content_id, "status": "rejected", "reason": reason}

    data = run(ctx, work)
    emit(ctx, data, f"content {content_id}: rejected ({reason})")


@content_group.command("show")
@click.argument("content_id", type=int)
@click.pass_context
def content_show(ctx: click.Context, content_id: int) -> None:
    """Show a content item with its revisions and decisions."""

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as session:
            return await workflow.show(session, content_id)

    data = run(ctx, work)
    latest = data["revisions"][-1]
    lines = [
        f"content {data['id']} [{data['status']}] by {data['author']}: {latest['title']}",
        f"category: {latest['category']}; revision {data['latest_revision']}; "
        f"approved revision: {data['approved_revision'] or '-'}",
        "",
        latest["body"],
        "",
    ]
    lines += [f"link: {link}" for link in latest["links"]]
    lines += [f"attachment: {h}" for h in latest["attachments"]]
    lines += [
        f"r{r['number']} {r['sha256'][:12]} by {r['author']} at {r['created_at']}" for r in data["revisions"]
    ]
    lines += [
        f"{d['decision']} r{d['revision']} by {d['by']} at {d['at']}"
        + (f": {d['reason']}" if d["reason"] else "")
        for d in data["decisions"]
    ]
    emit(ctx, data, lines)


@content_group.command("list")
@click.option("--status", type=click.Choice(list(workflow.TRANSITIONS)))
@click.pass_context
def content_list(ctx: click.Context, status: str | None) -> None:
    """List content items."""

    async def work(app: App) -> list[dict[str, Any]]:
        async with app.transaction() as session:
            return await workflow.list_items(session, status)

    rows = run(ctx, work)
    emit(ctx, rows, table(rows, ["id", "status", "revision", "approved_revision", "category", "title"]))


def _codes(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@click.command("send")
@click.argument("content_id", type=int)
@click.option("--scope", required=True, help="Unit code(s), comma-separated: the subtrees to reach.")
@click.option("--tiers", help="Levels to reach, comma-separated (default: every level).")
@click.option("--platforms", help="Platforms, comma-separated (default: all).")
@click.option("--at", "at", help="Send time, YYYY-MM-DDTHH:MM local (Asia/Ho_Chi_Minh) or with an offset.")
@click.option("--again", is_flag=True, help="Plan a new dispatch even if the same one exists already.")
@click.option(
    "--waves", default="", help="Tier waves, minutes after the send time: e.g. commune=15,village=30."
)
@click.option(
    "--quiet-hours",
    "quiet",
    default="21:00-06:00",
    show_default=True,
    help="Local hours with no posts (a send inside waits for their end), or off; per tier: "
    "21:00-06:00,village=20:00-07:00,province=off.",
)
@click.pass_context
def send(
    ctx: click.Context,
    content_id: int,
    scope: str,
    tiers: str | None,
    platforms: str | None,
    at: str | None,
    again: bool,
    waves: str,
    quiet: str,
) -> None:
    """Plan a dispatch of approved content: one delivery per group in the audience (idempotent)."""
    from scheduler.timing import parse_quiet_plan, parse_waves

    when = parse_time(at) if at else None
    offsets = parse_waves(waves)
    hours = parse_quiet_plan(quiet)

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            result = await planning.plan(
                session,
                actor,
                content_id,
                _codes(scope),
                tiers=_codes(tiers) or None,
                platforms=_codes(platforms) or None,
                at=when,
                again=again,
                waves=offsets,
                adjust=hours.after if hours is not None else None,
                adjust_key=f"quiet {hours.describe()}" if hours is not None else "",
                quiet_hours=hours.describe() if hours is not None else "",
            )
            return result.to_dict()

    data = run(ctx, work)
    verb = "planned" if data["created"] else "already planned"
    lines = [
        f"dispatch {data['dispatch']} {verb}: {data['added']} deliveries added, {data['total']} in all, "
        f"send at {data['scheduled_at']} (tree of {data['as_of']})",
        "by tier: " + ", ".join(f"{k} {v}" for k, v in data["by_level"].items()),
        "by platform: " + ", ".join(f"{k} {v}" for k, v in data["by_platform"].items()),
        "`cns worker` (or `cns serve`) sends it from then on; `cns status` follows it.",
    ]
    emit(ctx, data, lines)
