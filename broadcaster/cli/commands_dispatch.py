"""``cns worker``, ``cns status``, ``cns pause|resume|cancel``."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click

from broadcaster.bootstrap import make_dispatcher, tune_gc
from broadcaster.cli.base import emit, run, state
from broadcaster.directory import users
from broadcaster.dispatch import control as dispatch_control
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

    async def work(app: App) -> dict[str, Any]:
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
        return {
            "worker": dispatcher.worker_id,
            "claimed": stats.claimed,
            "sent": stats.sent,
            "failed": stats.failed,
            "retried": stats.retried,
            "recovered": stats.recovered,
            "errors": stats.errors,
        }

    data = run(ctx, work)
    emit(
        ctx,
        data,
        f"worker {data['worker']} stopped: {data['sent']} sent, {data['failed']} failed, "
        f"{data['retried']} to retry, {data['recovered']} recovered from a crash",
    )


def _bar(data: dict[str, Any]) -> str:
    total = data["total"] or 1
    done = round(BAR * data["finished"] / total)
    return f"[{'#' * done}{'.' * (BAR - done)}] {data['finished']}/{data['total']}"


def _lines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"dispatch {data['dispatch']} ({data['status']}) content {data['content']} at {data['scheduled_at']}"
        f"  {_bar(data)}",
        "  states:    " + ", ".join(f"{k} {v}" for k, v in data["by_state"].items()),
        "  platforms: " + ", ".join(f"{k} {v}" for k, v in data["by_platform"].items()),
    ]
    for tier, states in data["tier_states"].items():
        lines.append(f"  {tier:<10} " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    if data["quiet_hours_held"]:
        lines.append(
            f"  held for quiet hours: {data['quiet_hours_held']} (from {data['quiet_hours_resume'][:16]})"
        )
    if data["possible_duplicates"]:
        lines.append(f"  possible duplicates (re-sent after a crash): {data['possible_duplicates']}")
    return lines


@click.command()
@click.argument("dispatch_id", type=int, required=False)
@click.option(
    "--watch", is_flag=True, help="Refresh every second until the dispatch is finished (Ctrl+C stops)."
)
@click.pass_context
def status(ctx: click.Context, dispatch_id: int | None, watch: bool) -> None:
    """Progress of one dispatch (counts per state, tier and platform), or of the latest ones."""

    async def once(app: App) -> Any:
        async with app.transaction() as s:
            if dispatch_id is None:
                return await dispatch_control.list_dispatches(s)
            return await dispatch_control.status(s, dispatch_id)

    if not watch or dispatch_id is None or state(ctx).json:
        data = run(ctx, once)
        lines = [line for d in data for line in _lines(d)] if isinstance(data, list) else _lines(data)
        emit(ctx, data, lines or ["no dispatch yet"])
        return

    async def loop(app: App) -> None:
        while True:
            data = await once(app)
            click.echo("\x1b[2J\x1b[H" + "\n".join(_lines(data)))
            if data["finished"] >= data["total"] or data["status"] in {"done", "cancelled"}:
                return
            await asyncio.sleep(1)

    run(ctx, loop)


def _control(name: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("dispatch_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, dispatch_id: int) -> None:
        async def work(app: App) -> dict[str, Any]:
            async with app.transaction() as s:
                actor = await users.get_actor(s, app.settings.user)
                if name == "cancel":
                    skipped = await dispatch_control.cancel(s, actor, dispatch_id)
                    return {"dispatch": dispatch_id, "status": "cancelled", "skipped": skipped}
                dispatch = await getattr(dispatch_control, name)(s, actor, dispatch_id)
                return {"dispatch": dispatch_id, "status": dispatch.status}

        data = run(ctx, work)
        extra = f" ({data['skipped']} deliveries not sent)" if "skipped" in data else ""
        emit(ctx, data, f"dispatch {dispatch_id}: {data['status']}{extra}")

    return command


@click.command()
@click.argument("dispatch_id", type=int)
@click.pass_context
def recall(ctx: click.Context, dispatch_id: int) -> None:
    """Take a dispatch back: skip what is not sent, delete where the platform can, ask relay admins to
    remove it, and say where it could not be deleted."""
    from broadcaster.bootstrap import sender_factories
    from broadcaster.dispatch import recall as recalling

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as s:
            actor = await users.get_actor(s, app.settings.user)
        senders, relay = sender_factories(app.settings)
        report = await recalling.recall(app, actor, dispatch_id, senders=senders, relay=relay)
        return report.to_dict()

    data = run(ctx, work)
    lines = [
        f"dispatch {dispatch_id} recalled: {data['deleted']} deleted, "
        f"{data['admins_told']} relay groups' admins told, "
        f"{data['not_deletable']} could not be deleted (remove by hand), {data['failed']} failed, "
        f"{data['skipped']} not sent"
    ]
    lines += [
        f"  {p}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for p, c in data["by_platform"].items()
    ]
    lines += [f"  error: {e}" for e in data["errors"]]
    emit(ctx, data, lines)


@click.command()
@click.argument("dispatch_id", type=int)
@click.pass_context
def correct(ctx: click.Context, dispatch_id: int) -> None:
    """Replace a sent post with the content's newer approved revision: edit where the platform can,
    else post a correction naming the original; relay admins get the new text."""
    from broadcaster.bootstrap import sender_factories
    from broadcaster.dispatch import correction
    from content.render import render_revision

    async def work(app: App) -> dict[str, Any]:
        async with app.transaction() as s:
            actor = await users.get_actor(s, app.settings.user)
        senders, relay = sender_factories(app.settings)
        report = await correction.correct(
            app, actor, dispatch_id, senders=senders, relay=relay, render=render_revision
        )
        return report.to_dict()

    data = run(ctx, work)
    lines = [
        f"dispatch {dispatch_id} corrected to revision {data['revision']}: {data['edited']} edited in place, "
        f"{data['correction_posts']} correction posts, {data['admins_told']} relay groups' admins told, "
        f"{data['failed']} failed"
    ]
    lines += [f"  error: {e}" for e in data["errors"]]
    emit(ctx, data, lines)


pause = _control("pause", "Pause a dispatch: nothing more is sent until resume.")
resume = _control("resume", "Resume a paused dispatch.")
cancel = _control("cancel", "Cancel a dispatch: deliveries not yet sent are skipped.")
