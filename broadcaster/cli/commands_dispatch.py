"""``cns worker``, ``cns status``, ``cns pause|resume|cancel``."""

from __future__ import annotations

import asyncio
import signal

import click
from sqlalchemy.ext.asyncio import AsyncSession

from broadcaster.bootstrap import WorkerSummary, make_dispatcher, tune_gc
from broadcaster.cli.base import emit, fail_if_any_failed, run, state
from broadcaster.directory import alerts, users
from broadcaster.dispatch import control as dispatch_control
from broadcaster.dispatch.control import Cancelled, ControlResult, DispatchProgress
from broadcaster.domain.states import DISPATCH_ENDED, DispatchStatus
from broadcaster.domain.timeutil import today
from broadcaster.storage.app import App

BAR = 30


def register(cli: click.Group) -> None:
    for command in (worker, status, pause, resume, cancel, recall, correct):
        cli.add_command(command)


@click.command()
@click.option("--until-idle", is_flag=True, help="Exit when nothing is due or in flight (scripts, the demo).")
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 2000))
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--lease", default=60.0, show_default=True, type=click.FloatRange(5), help="Lease in seconds.")
@click.option(
    "--unknown-policy",
    type=click.Choice(["resend", "hold"]),
    default="resend",
    show_default=True,
    help="What to do with a delivery whose send was interrupted by a crash.",
)
@click.pass_context
def worker(
    ctx: click.Context, until_idle: bool, concurrency: int, batch: int, lease: float, unknown_policy: str
) -> None:
    """Run the dispatcher: send due deliveries until SIGTERM (finishing sends in flight)."""
    tune_gc()

    async def work(app: App) -> WorkerSummary:
        dispatcher = make_dispatcher(
            app, concurrency=concurrency, batch=batch, lease_seconds=lease, unknown_policy=unknown_policy
        )
        from scheduler import campaigns

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await campaigns.run_due(app)  # occurrences that came while no worker ran
        from broadcaster.runtime.upkeep import upkeep_loop

        scheduler = asyncio.create_task(campaigns.loop(app, stop))
        upkeep = None if until_idle else asyncio.create_task(upkeep_loop(app, stop, dispatcher))
        try:
            stats = await dispatcher.run(stop, until_idle=until_idle)
        finally:
            stop.set()
            await scheduler
            if upkeep is not None:
                await upkeep
        return WorkerSummary.of(dispatcher.worker_id, stats)

    summary = run(ctx, work)
    emit(
        ctx,
        summary,
        f"worker {summary.worker} stopped: {summary.sent} sent, {summary.failed} failed, "
        f"{summary.retried} to retry, {summary.recovered} recovered from a crash",
    )


def _bar(progress: DispatchProgress) -> str:
    total = progress.total or 1
    done = round(BAR * progress.finished / total)
    return f"[{'#' * done}{'.' * (BAR - done)}] {progress.finished}/{progress.total}"


def _lines(p: DispatchProgress) -> list[str]:
    lines = [
        f"dispatch {p.dispatch} ({p.status}) content {p.content} at {p.scheduled_at.isoformat()}  {_bar(p)}",
        "  states:    " + ", ".join(f"{k} {v}" for k, v in p.by_state.items()),
        "  platforms: " + ", ".join(f"{k} {v}" for k, v in p.by_platform.items()),
    ]
    for tier, states in p.tier_states.items():
        lines.append(f"  {tier:<10} " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    if p.quiet_hours_held:
        resume = p.quiet_hours_resume.isoformat()[:16] if p.quiet_hours_resume else None
        lines.append(f"  held for quiet hours: {p.quiet_hours_held} (from {resume})")
    if p.possible_duplicates:
        lines.append(f"  possible duplicates (re-sent after a crash): {p.possible_duplicates}")
    return lines


@click.command()
@click.argument("dispatch_id", type=int, required=False)
@click.option(
    "--watch", is_flag=True, help="Refresh every second until the dispatch is finished (Ctrl+C stops)."
)
@click.pass_context
def status(ctx: click.Context, dispatch_id: int | None, watch: bool) -> None:
    """Progress of one dispatch (counts per state, tier and platform), or of the latest ones."""

    open_alerts = 0

    async def count_alerts(app: App, s: AsyncSession) -> None:
        nonlocal open_alerts
        actor = await users.get_actor(s, app.settings.user) if app.settings.user else None
        open_alerts = await alerts.open_count(s, actor, today=today())

    def alert_line() -> list[str]:
        if not open_alerts:
            return []
        return [f"{open_alerts} open alerts need someone to look at them: cns alerts --open"]

    async def latest(app: App) -> list[DispatchProgress]:
        async with app.transaction() as s:
            await count_alerts(app, s)
            return await dispatch_control.list_dispatches(s)

    async def once(app: App, dispatch_id: int) -> DispatchProgress:
        async with app.transaction() as s:
            await count_alerts(app, s)
            return await dispatch_control.status(s, dispatch_id)

    if dispatch_id is None:
        found = run(ctx, latest)
        emit(ctx, found, ([line for d in found for line in _lines(d)] or ["no dispatch yet"]) + alert_line())
        return
    if not watch or state(ctx).json:
        progress = run(ctx, lambda app: once(app, dispatch_id))
        emit(ctx, progress, _lines(progress) + alert_line())
        return

    async def loop(app: App) -> None:
        while True:
            progress = await once(app, dispatch_id)
            click.echo("\x1b[2J\x1b[H" + "\n".join(_lines(progress)))
            if progress.finished >= progress.total or progress.status in DISPATCH_ENDED:
                return
            await asyncio.sleep(1)

    run(ctx, loop)


def _control(name: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("dispatch_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, dispatch_id: int) -> None:
        async def work(app: App) -> ControlResult | Cancelled:
            async with app.transaction() as s:
                actor = await users.get_actor(s, app.settings.user)
                if name == "cancel":
                    skipped = await dispatch_control.cancel(s, actor, dispatch_id)
                    return Cancelled(dispatch_id, DispatchStatus.CANCELLED, skipped)
                dispatch = await getattr(dispatch_control, name)(s, actor, dispatch_id)
                return ControlResult(dispatch_id, dispatch.status)

        done = run(ctx, work)
        extra = f" ({done.skipped} deliveries not sent)" if isinstance(done, Cancelled) else ""
        emit(ctx, done, f"dispatch {dispatch_id}: {done.status}{extra}")

    return command


@click.command()
@click.argument("dispatch_id", type=int)
@click.pass_context
def recall(ctx: click.Context, dispatch_id: int) -> None:
    """Take a dispatch back: skip what is not sent, delete where the platform can, ask relay admins to
    remove it, and say where it could not be deleted."""
    from broadcaster.bootstrap import sender_factories
    from broadcaster.dispatch import recall as recalling

    async def work(app: App) -> recalling.RecallReport:
        async with app.transaction() as s:
            actor = await users.get_actor(s, app.settings.user)
        senders, relay = sender_factories(app.settings)
        return await recalling.recall(app, actor, dispatch_id, senders=senders, relay=relay)

    report = run(ctx, work)
    lines = [
        f"dispatch {dispatch_id} recalled: {report.deleted} deleted, "
        f"{report.admins_told} relay groups' admins told, "
        f"{report.not_deletable} could not be deleted (remove by hand), {report.failed} failed, "
        f"{report.skipped} not sent"
    ]
    lines += [f"  {p}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for p, c in report.by_platform.items()]
    lines += [f"  error: {e}" for e in report.errors]
    emit(ctx, report, lines)
    fail_if_any_failed(
        report.failed,
        report.deleted + report.admins_told + report.not_deletable + report.failed,
        f"recall of dispatch {dispatch_id}",
        f"; run `cns recall {dispatch_id}` again to retry them",
    )


@click.command()
@click.argument("dispatch_id", type=int)
@click.pass_context
def correct(ctx: click.Context, dispatch_id: int) -> None:
    """Replace a sent post with the content's newer approved revision: edit where the platform can,
    else post a correction naming the original; relay admins get the new text."""
    from broadcaster.bootstrap import sender_factories
    from broadcaster.dispatch import correction
    from content.render import render_revision

    async def work(app: App) -> correction.CorrectionReport:
        async with app.transaction() as s:
            actor = await users.get_actor(s, app.settings.user)
        senders, relay = sender_factories(app.settings)
        return await correction.correct(
            app, actor, dispatch_id, senders=senders, relay=relay, render=render_revision
        )

    report = run(ctx, work)
    lines = [
        f"dispatch {dispatch_id} corrected to revision {report.revision}: {report.edited} edited in place, "
        f"{report.correction_posts} correction posts, {report.admins_told} relay groups' admins told, "
        f"{report.failed} failed"
    ]
    lines += [f"  error: {e}" for e in report.errors]
    emit(ctx, report, lines)
    fail_if_any_failed(
        report.failed,
        report.edited + report.correction_posts + report.admins_told + report.failed,
        f"correction of dispatch {dispatch_id}",
    )


pause = _control("pause", "Pause a dispatch: nothing more is sent until resume.")
resume = _control("resume", "Resume a paused dispatch.")
cancel = _control("cancel", "Cancel a dispatch: deliveries not yet sent are skipped.")
