"""``cns demo``."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broadcaster.cli.base import emit

if TYPE_CHECKING:
    from broadcaster.cli.demo import DemoSummary


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@click.option(
    "--keep",
    "keep",
    type=click.Path(path_type=Path, file_okay=False),
    help="Work in this folder and keep the database (default: a temporary folder, removed after).",
)
@click.pass_context
def demo(ctx: click.Context, keep: Path | None) -> None:
    """Run the product on embedded defaults (Lai Châu) in a fresh SQLite database and print a summary."""
    from broadcaster.cli.demo import run_demo

    workdir = keep or Path(tempfile.mkdtemp(prefix="cns-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        summary = asyncio.run(run_demo(workdir))
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    emit(ctx, summary, _lines(summary, kept=keep is not None))


def _lines(s: DemoSummary, kept: bool) -> list[str]:
    from broadcaster.cli.commands_engagement import _table

    d, sending, people = s.dispatch, s.sending, s.engagement.people
    units = "; ".join(
        f"{day}: " + ", ".join(f"{n} {lvl}" for lvl, n in c.items()) for day, c in s.units.items()
    )
    return [
        "CNS Broadcaster demo (Lai Châu, embedded data)",
        f"  database      {s.database}" + ("" if kept else " (temporary, removed)"),
        f"  units         {units}",
        f"  groups        {s.groups.total}: "
        + ", ".join(f"{k} {v}" for k, v in s.groups.by_platform_mode.items()),
        f"  groups check  {s.groups_check.ok} titles ok, {s.groups_check.mismatched} mismatched, "
        f"{s.groups_check.units_without_group} units without a group",
        f"  content       #{s.content.id} written by {s.content.author}, approved by {s.content.approved_by}",
        f"  dispatch      #{d.dispatch_id}: {d.total} deliveries planned for {d.scheduled_at.isoformat()}",
        "    by state    " + ", ".join(f"{k} {v}" for k, v in d.by_state.items()),
        "    by tier     " + ", ".join(f"{k} {v}" for k, v in d.by_level.items()),
        "    by platform " + ", ".join(f"{k} {v}" for k, v in d.by_platform.items()),
        f"  re-planning   added {s.replanned.added} (idempotent)",
        f"  sent in       {sending.seconds} s through the sandbox platforms; dispatch {sending.status}",
        "    outcome     " + ", ".join(f"{k} {v}" for k, v in sending.by_state.items()),
        "    received    "
        + ", ".join(f"{k} {v}" for k, v in sending.sandbox_messages.items())
        + " (messages/posts on each sandbox; relay sends 3 per village leader)",
        f"  people        {people.confirmed} relay posts confirmed by village leaders, "
        f"{people.link_opened} links opened ({people.previews} preview fetches not counted)",
        "  webhooks      "
        + ", ".join(f"{k} {v}" for k, v in s.engagement.inbound_events.items())
        + " (signed events from the sandboxes, through cns serve)",
        f"  reach         member counts read from {s.engagement.groups_counted} direct groups "
        "(getChatMemberCount, Zalo group info, Page followers, bridge query; relay groups stay unknown)",
        "",
        *_table(s.report),
        "",
        "  done:         " + "; ".join(s.done),
        "  NOT done:     " + "; ".join(s.not_done),
    ]
