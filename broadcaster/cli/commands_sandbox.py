"""``cns sandbox``: the fake platforms on 127.0.0.1, for trying the product and for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

import click

from broadcaster.cli.base import state


def register(cli: click.Group) -> None:
    cli.add_command(sandbox)


@click.command()
@click.option("--only", help="Comma-separated platforms to start (default: all).")
@click.option("--port", "ports", multiple=True, metavar="PLATFORM=PORT", help="Fixed port for a platform.")
@click.option("--no-limits", is_flag=True, help="Turn the platforms' rate limits off (benchmarks).")
@click.option(
    "--error-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of requests answered 5xx."
)
@click.option("--latency", type=click.FloatRange(0), default=0.0, help="Seconds added to every answer.")
@click.option("--seed", type=int, default=0, help="Seed of the fault injection.")
@click.option(
    "--reply-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of posts members reply to."
)
@click.option(
    "--hooks",
    "hook_base",
    default="",
    metavar="URL",
    help="Base URL of `cns serve`: members' replies go to URL/hooks/<platform>/<account>.",
)
@click.option(
    "--url-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the URLs as JSON to this file once listening (for scripts).",
)
@click.pass_context
def sandbox(
    ctx: click.Context,
    only: str | None,
    ports: tuple[str, ...],
    no_limits: bool,
    error_rate: float,
    latency: float,
    seed: int,
    reply_rate: float,
    hook_base: str,
    url_file: Path | None,
) -> None:
    """Start the sandbox platforms on 127.0.0.1 until interrupted, and print how to use them."""
    from adapters.sandbox.common import FaultConfig
    from adapters.sandbox.run import PLATFORMS, SandboxConfig, Sandboxes

    chosen = tuple(p.strip() for p in only.split(",")) if only else PLATFORMS
    unknown = [p for p in chosen if p not in PLATFORMS]
    if unknown:
        raise click.BadParameter(
            f"unknown platform(s) {', '.join(unknown)} (available: {', '.join(PLATFORMS)})"
        )
    fixed = {}
    for item in ports:
        name, _, port = item.partition("=")
        if not port.isdigit():
            raise click.BadParameter(f"--port {item!r} must look like telegram=8081")
        fixed[name] = int(port)
    config = SandboxConfig(
        only=chosen,
        ports=fixed,
        limits=not no_limits,
        reply_rate=reply_rate,
        hook_base=hook_base.rstrip("/"),
        faults=FaultConfig(seed=seed, error_rate=error_rate, latency=latency),
    )
    as_json = state(ctx).json

    async def main() -> None:
        boxes = await Sandboxes(config).start()
        try:
            if url_file is not None:
                await asyncio.to_thread(url_file.write_text, json.dumps(boxes.urls))
            if as_json:
                click.echo(json.dumps({"urls": boxes.urls, "credentials": boxes.credentials}))
            else:
                click.echo("\n".join(boxes.instructions()))
                click.echo("Press Ctrl+C to stop.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await boxes.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
