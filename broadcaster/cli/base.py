"""Shared CLI plumbing: global options, running a coroutine against the app, output in text or JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import click

from broadcaster.directory.users import get_actor
from broadcaster.domain.settings import Settings
from broadcaster.storage.app import App

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
            if settings.user and check_schema:
                async with app.transaction() as session:
                    await get_actor(session, settings.user)  # an unknown --as is an error, even for reads
            return await work(app)
        finally:
            await app.close()

    return asyncio.run(main())


def _default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=_default)


def emit(ctx: click.Context, data: Any, lines: Iterable[str] | str | None = None) -> None:
    """Print ``data`` as JSON with --json, else ``lines`` (or a JSON rendering when none are given)."""
    if state(ctx).json or lines is None:
        click.echo(to_json(data))
        return
    click.echo(lines if isinstance(lines, str) else "\n".join(lines))


def table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    if not rows:
        return ["(none)"]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def fail(message: str) -> None:
    click.echo(f"cns: error: {message}", err=True)
    sys.exit(1)
