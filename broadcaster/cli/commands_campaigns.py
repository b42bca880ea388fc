"""``cns campaigns add|list``."""

from __future__ import annotations

import click

from broadcaster.cli.base import emit, run, table
from broadcaster.directory import users
from broadcaster.domain.errors import InputError
from broadcaster.domain.timeutil import parse_time
from broadcaster.storage.app import App


def register(cli: click.Group) -> None:
    cli.add_command(campaigns_group)


@click.group("campaigns")
def campaigns_group() -> None:
    """Campaigns: a series of posts sent on a recurrence (RRULE, Asia/Ho_Chi_Minh)."""


def _ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--posts {text!r}: content ids separated by commas") from None


@campaigns_group.command("add")
@click.argument("name")
@click.option("--posts", required=True, help="Content ids in the order they go out, e.g. 4,5,6.")
@click.option("--rrule", required=True, help='Recurrence, e.g. "FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=0".')
@click.option("--start", required=True, help="First moment the rule counts from (local time).")
@click.option("--scope", required=True, help="Unit code(s), comma-separated.")
@click.option("--tiers", default="", help="Levels, comma-separated (default: all).")
@click.option("--platforms", default="", help="Platforms, comma-separated (default: all).")
@click.option("--waves", default="", help="e.g. commune=15,village=30.")
@click.option("--quiet-hours", "quiet", default="21:00-06:00", show_default=True)
@click.pass_context
def campaigns_add(
    ctx: click.Context,
    name: str,
    posts: str,
    rrule: str,
    start: str,
    scope: str,
    tiers: str,
    platforms: str,
    waves: str,
    quiet: str,
) -> None:
    """Create a campaign; `cns worker` dispatches each post when its occurrence comes."""
    from scheduler.campaigns import CampaignInfo, add_campaign, list_campaigns
    from scheduler.timing import parse_waves

    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    async def work(app: App) -> CampaignInfo:
        async with app.transaction() as s:
            actor = await users.get_actor(s, app.settings.user)
            campaign = await add_campaign(
                s,
                actor,
                name,
                posts=_ids(posts),
                rrule=rrule,
                starts_at=parse_time(start),
                scope=split(scope),
                tiers=split(tiers),
                platforms=split(platforms),
                waves=parse_waves(waves),
                quiet_hours=quiet,
            )
            return next(c for c in await list_campaigns(s) if c.id == campaign.id)

    added = run(ctx, work)
    upcoming = added.next_occurrence.isoformat() if added.next_occurrence else None
    emit(ctx, added, f"campaign {added.id} {name!r}: {len(added.posts)} posts, next {upcoming}")


@campaigns_group.command("list")
@click.pass_context
def campaigns_list(ctx: click.Context) -> None:
    """List campaigns with their next occurrence."""
    from scheduler.campaigns import CampaignInfo, list_campaigns

    async def work(app: App) -> list[CampaignInfo]:
        async with app.transaction() as s:
            return await list_campaigns(s)

    rows = run(ctx, work)
    emit(
        ctx,
        rows,
        table(
            ["id", "name", "status", "posts", "next_post", "next_occurrence", "rrule"],
            [(c.id, c.name, c.status, c.posts, c.next_post, c.next_occurrence, c.rrule) for c in rows],
        ),
    )
