"""Benchmark: durable dispatch throughput against the sandbox Telegram server in a separate process.

Method: `cns sandbox --only telegram --no-limits` in another process. A fresh SQLite database with the
Lai Châu 2025 communes plus N generated villages, one Telegram group each, one approved post and one
planned dispatch (setup, not timed). Timed: `cns worker`'s dispatcher (`make_dispatcher`, real
TelegramSender over aiohttp, leases, outcomes committed per batch) from start until nothing is left,
with the account's own pacing lifted (`rate_per_second` very high) as the server's limits are off.
In the same run, before it and again after it, the raw aiohttp rate: N form-encoded `sendMessage`
POSTs with the same number in flight; the ratio is against the mean of the two (on this shared
machine one raw measurement alone swung by up to 50 % between runs). Also reports the peak RSS of
this process (ru_maxrss). The process tunes its garbage collector as `cns worker` does (`tune_gc`).
Run: `python benchmarks/dispatch_throughput.py [--groups N] [--concurrency C] [--batch B] [--db URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from benchmarks import world
from benchmarks.telegram_send import raw_rate
from broadcaster.bootstrap import make_dispatcher, tune_gc
from broadcaster.storage.app import App


async def dispatch(app: App, concurrency: int, batch: int) -> tuple[float, dict[str, object]]:
    dispatcher = make_dispatcher(app, concurrency=concurrency, batch=batch)
    start = time.perf_counter()
    stats = await dispatcher.run(asyncio.Event(), until_idle=True, idle_sleep=0.05)
    elapsed = time.perf_counter() - start
    await app.close()
    return elapsed, {"sent": stats.sent, "failed": stats.failed, "held": stats.held, "errors": stats.errors}


async def phases(
    work: Path, url: str, base: str, args: argparse.Namespace
) -> tuple[int, tuple[float, float], float, dict[str, object]]:
    """All in one event loop: the database connections belong to it."""
    app, total = await world.build(work, url, base, args.groups)
    before = await raw_rate(base, args.groups, args.concurrency)
    elapsed, stats = await dispatch(app, args.concurrency, args.batch)
    after = await raw_rate(base, args.groups, args.concurrency)
    return total, (before, after), elapsed, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--db", help="database URL (default: a temporary SQLite file; PostgreSQL: a new database on it)"
    )
    args = parser.parse_args()
    tune_gc()  # as `cns worker` does; the raw rate is measured in this same process with it
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server, base = world.start_sandbox(work)
        try:
            with world.fresh_database(args.db, work) as url:
                total, raws, elapsed, stats = asyncio.run(phases(work, url, base, args))
        finally:
            server.terminate()
            server.wait(timeout=10)
    rate = stats["sent"] / elapsed  # type: ignore[operator]
    raw = sum(raws) / 2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"sandbox Telegram in a separate process, limits off; {total:,} deliveries, "
        f"{args.concurrency} in flight, batches of {args.batch}; database {args.db or 'SQLite'}"
    )
    print(
        f"raw aiohttp POST sendMessage: {raw:,.0f} requests/s (before {raws[0]:,.0f}, after {raws[1]:,.0f})"
    )
    print(
        f"durable dispatch: {stats['sent']:,} sent in {elapsed:.2f} s = {rate:,.0f} deliveries/s "
        f"({rate / raw:.0%} of raw); {stats}"
    )
    print(f"peak RSS of this process: {rss:,.0f} MB")


if __name__ == "__main__":
    main()
