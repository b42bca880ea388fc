"""``cns``: the command-line entry point. Exit 0 on success, 2 on usage errors, 1 on a refused or
failed operation with a one-line reason on stderr."""

from __future__ import annotations

import dataclasses
import sys

import click
from sqlalchemy.exc import SQLAlchemyError

from broadcaster import __version__
from broadcaster.cli import (
    commands_alerts,
    commands_campaigns,
    commands_content,
    commands_core,
    commands_demo,
    commands_dispatch,
    commands_engagement,
    commands_groups,
    commands_sandbox,
)
from broadcaster.cli.base import CliState, fail
from broadcaster.domain.errors import CnsError
from broadcaster.domain.secrets import redact_text
from broadcaster.domain.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--db",
    "database_url",
    metavar="URL",
    help="Database URL (default: $CNS_DATABASE_URL or sqlite:///./cns.db).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output on stdout.")
@click.option("--as", "user", metavar="USER", help="Act as this user (default: $CNS_USER).")
@click.version_option(__version__, prog_name="cns")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, as_json: bool, user: str | None) -> None:
    """CNS Broadcaster: push approved guidance content through the CNS groups of every tier."""
    settings = Settings.from_env()
    changes: dict[str, object] = {}
    if database_url:
        changes["database_url"] = database_url
    if user:
        changes["user"] = user
    ctx.obj = CliState(dataclasses.replace(settings, **changes), as_json)  # type: ignore[arg-type]


for module in (
    commands_core,
    commands_groups,
    commands_content,
    commands_dispatch,
    commands_engagement,
    commands_campaigns,
    commands_demo,
    commands_sandbox,
    commands_alerts,
):
    module.register(cli)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="cns", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("aborted")
    except CnsError as exc:
        fail(redact_text(str(exc)))
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        fail(f"database error: {redact_text(first)}")
    except OSError as exc:
        fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}")


if __name__ == "__main__":  # pragma: no cover
    main()
