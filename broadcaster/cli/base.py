"""Shared CLI plumbing: global options, running a coroutine against the app, output in text or JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

import click

from broadcaster.directory.users import get_actor
from broadcaster.domain.results import to_data
from broadcaster.domain.settings import Settings
from broadcaster.storage.app import App
from broadcaster.storage.instance_keys import with_link_key

T = TypeVar("T")


@dataclass(slots=True)
class CliState:
    settings: Settings
    json: bool


def state(ctx: click.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def run(ctx: click.Context, work: Callable[[App], Awaitable[T]], *, check_schema: bool = True) -> T:
    """Open the app, run ``work``, close the app (all in one event loop)."""
    settings = state(ctx).settings

    async def main() -> T:
        app = await App.open(settings, check_schema=check_schema)
        try:
            if check_schema:  # a current schema: the link key stored with it keys links from now on
                app = await with_link_key(app)
            if settings.user and check_schema:
                async with app.transaction() as session:
                    await get_actor(session, settings.user)  # an unknown --as is an error, even for reads
            return await work(app)
        finally:
            await app.close()

    return asyncio.run(main())


def to_json(result: object) -> str:
    """A result (see ``broadcaster.domain.results``), or a list of them, as the JSON ``--json`` prints."""
    return json.dumps(to_data(result), ensure_ascii=False, indent=2)


def emit(ctx: click.Context, result: object, lines: Iterable[str] | str | None = None) -> None:
    """Print ``result`` as JSON with --json, else ``lines`` (or the JSON when none are given)."""
    if state(ctx).json or lines is None:
        click.echo(to_json(result))
        return
    click.echo(lines if isinstance(lines, str) else "\n".join(lines))


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Rows of cells (one per column) as aligned text; ``-`` for None, JSON for lists and mappings."""
    cells = [[_cell(value) for value in row] for row in rows]
    if not cells:
        return ["(none)"]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return out


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(to_data(value), ensure_ascii=False)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def fail(message: str) -> None:
    click.echo(f"cns: error: {message}", err=True)
    sys.exit(1)


def fail_if_any_failed(failed: int, out_of: int, doing: str, hint: str = "") -> None:
    """After a command acting on many groups has printed its per-group results: exit 1 with a one-line
    reason when any group failed (the README's exit-code rule), else return."""
    if failed:
        fail(f"{doing}: {failed} of {out_of} groups failed{hint}")
