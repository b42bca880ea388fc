"""``cns alerts``: what someone must look at (accounts paused, groups or relay admins unreachable...)."""

from __future__ import annotations

import click

from broadcaster.cli.base import emit, run, table
from broadcaster.directory import alerts, users
from broadcaster.domain.timeutil import LOCAL_TZ, today
from broadcaster.storage.app import App


def register(cli: click.Group) -> None:
    cli.add_command(alerts_group)


def _where(alert: alerts.AlertInfo) -> str:
    if alert.group:
        return f"{alert.group} ({alert.unit_name})" if alert.unit_name else alert.group
    if alert.account:
        return f"account {alert.account}"
    return f"dispatch {alert.dispatch}" if alert.dispatch else "-"


def _rows(found: list[alerts.AlertInfo]) -> list[str]:
    return table(
        ["id", "at", "kind", "where", "message", "state"],
        [
            (
                a.id,
                a.at.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M"),
                a.kind,
                _where(a),
                a.message,
                "open" if a.open else "acknowledged",
            )
            for a in found
        ],
    )


@click.group("alerts", invoke_without_command=True)
@click.option("--open", "open_only", is_flag=True, help="Only those nobody has acknowledged.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.pass_context
def alerts_group(ctx: click.Context, open_only: bool, limit: int) -> None:
    """List alerts, newest first (a scoped user sees those of groups in their subtree)."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(app: App) -> list[alerts.AlertInfo]:
        async with app.transaction() as s:
            actor = await users.get_actor(s, app.settings.user)
            return await alerts.list_alerts(s, actor, today=today(), open_only=open_only, limit=limit)

    found = run(ctx, work)
    emit(ctx, found, _rows(found))


@alerts_group.command("ack")
@click.argument("alert_id", type=int)
@click.pass_context
def ack(ctx: click.Context, alert_id: int) -> None:
    """Acknowledge an alert: seen and being handled."""

    async def work(app: App) -> alerts.AlertInfo:
        async with app.transaction() as s:
            actor = await users.get_actor(s, app.settings.user)
            return await alerts.acknowledge(s, actor, alert_id, today=today())

    alert = run(ctx, work)
    emit(ctx, alert, f"alert {alert.id} acknowledged: {alert.message}")
