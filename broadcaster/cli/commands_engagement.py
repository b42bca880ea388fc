"""``cns serve``, ``cns replies``, ``cns report monthly``, ``cns privacy export|delete``."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broadcaster.bootstrap import ServeSummary, make_dispatcher, make_web_app, tune_gc
from broadcaster.cli.base import emit, fail_if_any_failed, run, state, table, to_json
from broadcaster.directory import users
from broadcaster.domain.errors import ConfigError
from broadcaster.domain.settings import Settings, is_loopback_host
from broadcaster.domain.timeutil import parse_time, today
from broadcaster.inbound import privacy
from broadcaster.reports import engagement
from broadcaster.reports import monthly as reports
from broadcaster.reports.monthly import EmptyMonthlyReport, MonthlyReport
from broadcaster.storage.app import App

if TYPE_CHECKING:
    from broadcaster.cli.demo import DemoReport

Report = MonthlyReport | EmptyMonthlyReport

REPORT_COLUMNS = [
    "groups",
    "groups_active",
    "groups_unreachable",
    "coverage",
    "members",
    "members_unknown_groups",
    "posts_planned",
    "posts_delivered",
    "posts_failed",
    "posts_confirmed",
    "relay_confirmation_rate",
    "replies",
    "reactions",
    "clicks",
    "reply_rate",
]


def register(cli: click.Group) -> None:
    for command in (serve, replies, report_group, privacy_group):
        cli.add_command(command)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-worker", is_flag=True, help="Only the web endpoints: run `cns worker` elsewhere.")
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 2000))
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, no_worker: bool, concurrency: int) -> None:
    """Serve webhooks, tracked links, relay confirmations, /healthz, /metrics and the JSON API; also send
    (the worker loops) unless --no-worker. Stops cleanly on SIGTERM."""
    from aiohttp import web

    tune_gc()

    async def work(app: App) -> ServeSummary:
        refuse_a_guessable_key(app.settings, host)
        web_app = make_web_app(app)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        addresses = runner.addresses  # the real port when --port 0 asked for any free one
        bound = f"http://{host}:{addresses[0][1] if addresses else port}"
        click.echo(f"cns serve listening on {bound}" + ("" if no_worker else " (with the worker)"), err=True)
        tasks: list[asyncio.Task[Any]] = []
        if not no_worker:
            from broadcaster.runtime.upkeep import upkeep_loop
            from scheduler import campaigns

            dispatcher = make_dispatcher(app, concurrency=concurrency)
            tasks = [
                asyncio.create_task(dispatcher.run(stop)),
                asyncio.create_task(campaigns.loop(app, stop)),
                asyncio.create_task(upkeep_loop(app, stop, dispatcher)),
            ]
        await stop.wait()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
        return ServeSummary(bound)

    summary = run(ctx, work)
    emit(ctx, summary, f"cns serve on {summary.url} stopped")


def refuse_a_guessable_key(settings: Settings, host: str) -> None:
    """``cns serve`` checks relay confirmations and tracked links by their key: with the fallback anyone
    can compute (no CNS_LINK_SECRET, no key stored by ``cns init``) it only serves this machine."""
    if not settings.link_key_is_guessable:
        return
    reachable = [
        what
        for what, local in (
            (f"CNS_PUBLIC_URL {settings.public_url}", settings.public_url_is_local),
            (f"--host {host}", is_loopback_host(host)),
        )
        if not local
    ]
    if reachable:
        raise ConfigError(
            f"{' and '.join(reachable)} can be reached from other machines, but no link key is set, so "
            "relay confirmations and tracked links could be forged: run `cns init` (it stores a random "
            "key with the database) or set CNS_LINK_SECRET"
        )


@click.command()
@click.option("--unit", "unit_code", help="Only this unit's subtree (default: your scope).")
@click.option("--since", help="From this date/time (Asia/Ho_Chi_Minh unless an offset is given).")
@click.option("--until", help="Before this date/time.")
@click.option("--dispatch", "dispatch_id", type=int, help="Only answers to this dispatch.")
@click.option("--content", "content_id", type=int, help="Only answers to this content item.")
@click.option("--platform", type=click.Choice(["telegram", "zalo", "facebook", "webhook"]))
@click.option("--tier", help="Only units of this tier (village, commune, ...).")
@click.option(
    "--kind",
    "kinds",
    default="reply",
    show_default=True,
    help="Comma-separated: " + ",".join(engagement.KINDS),
)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def replies(
    ctx: click.Context,
    unit_code: str | None,
    since: str | None,
    until: str | None,
    dispatch_id: int | None,
    content_id: int | None,
    platform: str | None,
    tier: str | None,
    kinds: str,
    limit: int,
) -> None:
    """The engagement log: what people answered (newest first)."""
    log_filter = engagement.LogFilter(
        unit_code=unit_code,
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        dispatch_id=dispatch_id,
        content_id=content_id,
        kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
        platform=platform,
        tier=tier,
        limit=limit,
    )

    async def work(app: App) -> list[engagement.InteractionRow]:
        async with app.transaction() as s:
            actor = await users.get_actor(s, state(ctx).settings.user) if state(ctx).settings.user else None
            return await engagement.interactions(s, actor, log_filter, today())

    rows = run(ctx, work)
    lines = [
        f"{r.at.isoformat()[:16]}  {r.kind:<12} {r.platform:<8} {r.unit.name if r.unit else '?'}: "
        f"{r.text or r.value or ''}"
        for r in rows
    ]
    emit(ctx, rows, lines or ["no interactions match"])


@click.group("report")
def report_group() -> None:
    """Reports rolled up tier by tier."""


@report_group.command("monthly")
@click.option("--month", required=True, help="YYYY-MM (the tree of that month is used).")
@click.option("--unit", "unit_code", help="Root of the report (default: the province, or your scope).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "xlsx", "json"]), default="table", show_default=True
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.pass_context
def report_monthly(
    ctx: click.Context, month: str, unit_code: str | None, fmt: str, output: Path | None
) -> None:
    """Groups, coverage, members, posts, confirmations, replies, reactions and clicks per unit."""

    async def work(app: App) -> Report:
        async with app.transaction() as s:
            actor = await users.get_actor(s, state(ctx).settings.user) if state(ctx).settings.user else None
            return await reports.monthly(s, actor, month, unit_code)

    report = run(ctx, work)
    if state(ctx).json:
        fmt = "json"
    if fmt == "xlsx":
        from broadcaster.reports.xlsx import write_xlsx

        if output is None:
            raise click.UsageError("--format xlsx needs -o FILE")
        write_xlsx(report, output)
        click.echo(f"wrote {output} ({len(report.units)} units)", err=True)
        return
    text = (
        to_json(report) + "\n"
        if fmt == "json"
        else _csv(report)
        if fmt == "csv"
        else "\n".join(_table(report)) + "\n"
    )
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.write(text)


@report_group.command("post")
@click.option("--month", required=True, help="YYYY-MM: the month to summarise.")
@click.option("--unit", "unit_code", help="Only steering groups under this unit (default: your scope).")
@click.option("--dry-run", is_flag=True, help="Show each group's message; send nothing.")
@click.pass_context
def report_post(ctx: click.Context, month: str, unit_code: str | None, dry_run: bool) -> None:
    """Post the month's summary to the steering groups (communes, districts, province; never villages or
    public Pages). Each group gets it once: run again to retry only the failed ones. `cns worker` does this
    on the 1st when CNS_REPORT_POST_HOUR is set."""
    from broadcaster.reports.post import PostOutcome, SummaryPreview, post_monthly, preview

    async def dry(app: App) -> list[SummaryPreview]:
        async with app.sessions() as s:
            actor = await users.get_actor(s, state(ctx).settings.user)
            return await preview(s, month, unit_code=unit_code, actor=actor)

    async def work(app: App) -> PostOutcome:
        async with app.sessions() as s:
            actor = await users.get_actor(s, state(ctx).settings.user)
        dispatcher = make_dispatcher(app)
        try:
            return await post_monthly(app, dispatcher, month, unit_code=unit_code, actor=actor)
        finally:
            await dispatcher.close()

    if dry_run:
        previews = run(ctx, dry)
        lines = [f"-- {p.group} ({p.platform} {p.external_id})\n{p.text}\n" for p in previews]
        emit(ctx, previews, lines or [f"no steering groups for {month}"])
        return
    outcome = run(ctx, work)
    emit(
        ctx,
        outcome,
        f"monthly summary {month}: {outcome.sent} sent, {outcome.already} already posted, "
        f"{outcome.failed} failed (run again to retry), {outcome.refused} refused (see alerts) "
        f"of {outcome.groups} steering groups",
    )
    fail_if_any_failed(
        outcome.failed + outcome.refused,
        outcome.groups,
        f"monthly summary {month}",
        " (the failed ones are tried again on the next run; refusals are in the alerts)",
    )


def _csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "code", "name", "level", "parent_code", *REPORT_COLUMNS])
    for unit in report.units:
        total = unit.total
        writer.writerow(
            [report.month, unit.code, unit.name, unit.level, unit.parent_code or ""]
            + ["" if (value := getattr(total, c)) is None else value for c in REPORT_COLUMNS]
        )
    return out.getvalue()


def _table(report: Report | DemoReport) -> list[str]:
    if isinstance(report, EmptyMonthlyReport) or not report.units:
        return [f"report {report.month}: no units on {report.as_of}"]
    t = report.totals
    members = "unknown" if t.members is None else t.members
    lines = [
        f"Monthly report {report.month} - {report.root.name} (tree of {report.as_of}; tiers "
        f"{' > '.join(report.tiers)})",
        f"  groups {t.groups} (active {t.groups_active}, unreachable {t.groups_unreachable}), "
        f"coverage {_pct(t.coverage)} of {t.units} units, members {members}"
        f" (+{t.members_unknown_groups} groups unknown)",
        f"  posts planned {t.posts_planned}, delivered {t.posts_delivered}, "
        f"failed {t.posts_failed}, confirmed {t.posts_confirmed} "
        f"(relay confirmation {_pct(t.relay_confirmation_rate)})",
        f"  replies {t.replies} (reply rate {_pct(t.reply_rate)}), reactions {t.reactions}, "
        f"clicks {t.clicks}",
        "",
    ]
    lines += table(
        [
            "unit",
            "level",
            "groups_active",
            "posts_delivered",
            "posts_confirmed",
            "replies",
            "reactions",
            "clicks",
        ],
        [
            (
                ("  " * _depth(u.level, report.tiers)) + u.name,
                u.level,
                u.total.groups_active,
                u.total.posts_delivered,
                u.total.posts_confirmed,
                u.total.replies,
                u.total.reactions,
                u.total.clicks,
            )
            for u in report.units
            if u.level != "village"
        ],
    )
    villages = sum(1 for u in report.units if u.level == "village")
    if villages:
        lines.append(
            f"({villages} villages are rolled into their communes; --format csv|xlsx|json lists them)"
        )
    return lines


def _depth(level: str, levels: Sequence[str]) -> int:
    return levels.index(level) if level in levels else 0


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"


@click.group("privacy")
def privacy_group() -> None:
    """A platform user's data: export or delete on request."""


@privacy_group.command("export")
@click.option("--platform", required=True, type=click.Choice(["telegram", "zalo", "facebook", "webhook"]))
@click.option("--user-id", required=True, help="The person's id on the platform.")
@click.pass_context
def privacy_export(ctx: click.Context, platform: str, user_id: str) -> None:
    """Everything stored about one person (always JSON); a scoped admin gets what lies in their subtree."""

    async def work(app: App) -> privacy.PersonExport:
        async with app.transaction() as s:
            actor = await _admin(ctx, s)
            found = [
                await privacy.export_person(s, actor, k, platform, user_id, today=today())
                for k in _pseudonym_keys(app)
            ]
        now = found[0]
        return dataclasses.replace(
            now,
            interactions=tuple(sorted((i for f in found for i in f.interactions), key=lambda i: i.at)),
            raw_events=tuple(sorted((e for f in found for e in f.raw_events), key=lambda e: e.id)),
        )

    sys.stdout.write(to_json(run(ctx, work)) + "\n")


@privacy_group.command("delete")
@click.option("--platform", required=True, type=click.Choice(["telegram", "zalo", "facebook", "webhook"]))
@click.option("--user-id", required=True, help="The person's id on the platform.")
@click.pass_context
def privacy_delete(ctx: click.Context, platform: str, user_id: str) -> None:
    """Erase one person's interactions and raw payloads (audited, without the id); a scoped admin erases
    what lies in their subtree."""

    async def work(app: App) -> privacy.PersonDeleted:
        from broadcaster.directory import audit

        key = app.settings.key_for_pseudonyms()
        async with (
            users.refusals_audited(
                app, app.settings.user, "privacy.delete", "person", privacy.pseudonym(key, platform, user_id)
            ),
            app.transaction() as s,
        ):
            actor = await _admin(ctx, s)
            done = [
                await privacy.delete_person(s, actor, k, platform, user_id, today=today())
                for k in _pseudonym_keys(app)
            ]
            counts = privacy.PersonDeleted(sum(d.interactions for d in done), sum(d.raw_events for d in done))
            await audit.record(
                s,
                actor.name,
                "privacy.delete",
                "person",
                privacy.pseudonym(key, platform, user_id),
                after=counts,
            )
            return counts

    done = run(ctx, work)
    emit(ctx, done, f"deleted {done.interactions} interactions, purged {done.raw_events} raw events")


def _pseudonym_keys(app: App) -> list[bytes]:
    """The key pseudonyms are made with, then the fallback derived from the database URL that made them
    before the database had a key of its own: a person's older rows are found (and deleted) too."""
    key, legacy = app.settings.key_for_pseudonyms(), app.settings.legacy_link_key()
    return [key] if key == legacy else [key, legacy]


async def _admin(ctx: click.Context, s: Any) -> users.Actor:
    actor = await users.get_actor(s, state(ctx).settings.user)
    actor.require(users.Permission.MANAGE_USERS)
    return actor
