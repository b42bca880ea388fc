"""``cns content ...`` and ``cns send``."""

from __future__ import annotations

from pathlib import Path

import click

from broadcaster.cli.base import emit, run, table
from broadcaster.directory import users
from broadcaster.dispatch import planning
from broadcaster.domain.errors import InputError
from broadcaster.domain.models import pk
from broadcaster.domain.states import ContentStatus
from broadcaster.domain.timeutil import parse_time, today
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

    async def work(app: App) -> workflow.RevisionSaved:
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
            return workflow.RevisionSaved(pk(item.id), item.status, revision.number, revision.sha256)

    saved = run(ctx, work)
    emit(ctx, saved, f"content {saved.id} created (draft, revision 1, sha256 {saved.sha256[:12]})")


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

    async def work(app: App) -> workflow.RevisionSaved:
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
            return workflow.RevisionSaved(content_id, ContentStatus.DRAFT, revision.number, revision.sha256)

    saved = run(ctx, work)
    emit(ctx, saved, f"content {content_id}: revision {saved.revision} (draft)")


def _simple(action: str, doc: str) -> click.Command:
    @click.command(action, help=doc)
    @click.argument("content_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, content_id: int) -> None:
        async def work(app: App) -> workflow.ContentState:
            async with app.transaction() as session:
                actor = await users.get_actor(session, app.settings.user)
                item = await getattr(workflow, action)(session, actor, content_id)
                return workflow.ContentState.of(item)

        state = run(ctx, work)
        emit(ctx, state, f"content {content_id}: {state.status}")

    return command


content_group.add_command(_simple("submit", "Submit the latest revision for approval."))
content_group.add_command(_simple("archive", "Archive a content item."))


@content_group.command("approve")
@click.argument("content_id", type=int)
@click.option("--revision", type=int, help="Fail unless this is the latest revision (what you reviewed).")
@click.pass_context
def content_approve(ctx: click.Context, content_id: int, revision: int | None) -> None:
    """Approve the latest revision (pinned by its hash). Whoever wrote any revision since the last
    approval (or since creation) cannot approve it."""

    async def work(app: App) -> workflow.Approved:
        async with (
            users.refusals_audited(app, app.settings.user, "content.approve", "content", content_id),
            app.transaction() as session,
        ):
            actor = await users.get_actor(session, app.settings.user)
            approval = await workflow.approve(session, actor, content_id, revision)
            return workflow.Approved(content_id, ContentStatus.APPROVED, approval.revision_sha256, actor.name)

    done = run(ctx, work)
    emit(ctx, done, f"content {content_id}: approved (sha256 {done.sha256[:12]}) by {done.by}")


@content_group.command("reject")
@click.argument("content_id", type=int)
@click.option("--reason", required=True, help="Why (shown to the author).")
@click.pass_context
def content_reject(ctx: click.Context, content_id: int, reason: str) -> None:
    """Reject the submitted revision, with a reason."""

    async def work(app: App) -> workflow.Rejected:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            await workflow.reject(session, actor, content_id, reason)
            return workflow.Rejected(content_id, ContentStatus.REJECTED, reason)

    emit(ctx, run(ctx, work), f"content {content_id}: rejected ({reason})")


@content_group.command("show")
@click.argument("content_id", type=int)
@click.pass_context
def content_show(ctx: click.Context, content_id: int) -> None:
    """Show a content item with its revisions and decisions (with --as, if the user may see it)."""

    async def work(app: App) -> workflow.ContentDetail:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user) if app.settings.user else None
            return await workflow.show(session, content_id, actor=actor, today=today())

    item = run(ctx, work)
    latest = item.revisions[-1]
    lines = [
        f"content {item.id} [{item.status}] by {item.author}: {latest.title}",
        f"category: {latest.category}; revision {item.latest_revision}; "
        f"approved revision: {item.approved_revision or '-'}",
        "",
        latest.body,
        "",
    ]
    lines += [f"link: {link}" for link in latest.links]
    lines += [f"attachment: {h}" for h in latest.attachments]
    lines += [
        f"r{r.number} {r.sha256[:12]} by {r.author} at {r.created_at.isoformat()}" for r in item.revisions
    ]
    lines += [
        f"{d.decision} r{d.revision} by {d.by} at {d.at.isoformat()}" + (f": {d.reason}" if d.reason else "")
        for d in item.decisions
    ]
    emit(ctx, item, lines)


@content_group.command("list")
@click.option("--status", type=click.Choice(list(workflow.TRANSITIONS)))
@click.pass_context
def content_list(ctx: click.Context, status: str | None) -> None:
    """List content items (with --as, those the user may see: see README, Roles and scope)."""

    async def work(app: App) -> list[workflow.ContentSummary]:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user) if app.settings.user else None
            return await workflow.list_items(session, status, actor=actor, today=today())

    rows = run(ctx, work)
    emit(
        ctx,
        rows,
        table(
            ["id", "status", "revision", "approved_revision", "category", "title"],
            [(c.id, c.status, c.revision, c.approved_revision, c.category, c.title) for c in rows],
        ),
    )


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

    async def work(app: App) -> planning.PlanResult:
        async with app.transaction() as session:
            actor = await users.get_actor(session, app.settings.user)
            return await planning.plan(
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

    plan = run(ctx, work)
    verb = "planned" if plan.created else "already planned"
    lines = [
        f"dispatch {plan.dispatch_id} {verb}: {plan.added} deliveries added, {plan.total} in all, "
        f"send at {plan.scheduled_at.isoformat()} (tree of {plan.as_of})",
        "by tier: " + ", ".join(f"{k} {v}" for k, v in plan.by_level.items()),
        "by platform: " + ", ".join(f"{k} {v}" for k, v in plan.by_platform.items()),
    ]
    if plan.left_out:
        lines.append(
            f"left out: {sum(plan.left_out.values())} groups of the audience get nothing ("
            + ", ".join(f"{n} {status}" for status, n in plan.left_out.items())
            + "): see `cns groups list --status unreachable` and the alerts"
        )
    lines.append("`cns worker` (or `cns serve`) sends it from then on; `cns status` follows it.")
    emit(ctx, plan, lines)
