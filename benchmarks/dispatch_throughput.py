"""Benchmark: durable dispatch throughput against the sandbox Telegram server in a separate process.

Method: `cns sandbox --only telegram --no-limits` in another process. A fresh SQLite database with the
Lai Châu 2025 communes plus N generated villages, one Telegram group each, one approved post and one
planned dispatch (setup, not timed). Timed: `cns worker`'s dispatcher (`make_dispatcher`, real
TelegramSender over aiohttp, leases, outcomes committed per batch) from start until nothing is left,
with the account's own pacing lifted (`rate_per_second` very high) as the server's limits are off.
In the same run, before it, the raw aiohttp rate: N form-encoded `sendMessage` POSTs with the same
number in flight. Also reports the peak RSS of this process (ru_maxrss).
Run: `python benchmarks/dispatch_throughput.py [--groups N] [--concurrency C] [--batch B] [--db URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.telegram_send import TOKEN, raw_rate
from broadcaster import accounts, groups, planning, users
from broadcaster.bootstrap import App, make_dispatcher
from broadcaster.cli.demo import data_file
from broadcaster.settings import Settings
from broadcaster.timeutil import today
from broadcaster.unit_import import import_units
from broadcaster.unit_tree import load_tree
from content import workflow


async def setup(work: Path, url: str, base: str, n: int) -> tuple[App, int]:
    os.environ["CNS_BENCH_TG"] = TOKEN
    app, _, _ = await App.initialise(Settings(database_url=url))
    day = today()
    async with app.transaction() as s:
        await users.add_user(s, None, "admin", "admin", today=day)
    async with app.transaction() as s:
        await import_units(s, data_file("laichau-2025-units.csv"), date(2025, 7, 1))
        tree = await load_tree(s, day)
    communes = sorted(x.code for x in tree.nodes.values() if x.level == "commune")
    with (work / "v.csv").open("w", newline="") as uf, (work / "g.csv").open("w", newline="") as gf:
        u, g = csv.writer(uf), csv.writer(gf)
        u.writerow(["code", "name", "type", "level", "parent_code"])
        g.writerow(["unit_code", "account", "external_id", "title"])
        for i in range(n):
            commune = communes[i % len(communes)]
            u.writerow([f"{commune}-{i:06d}", f"Bản {i}", "bản", "village", commune])
            g.writerow([f"{commune}-{i:06d}", "tg", str(-1_000_000_000 - i), f"CNS_Bản {i}_{commune}"])
    async with app.transaction() as s:
        await import_units(s, work / "v.csv", date(2025, 7, 1))
        await users.add_user(s, "admin", "ed", "editor", today=day)
        await users.add_user(s, "admin", "ap", "approver", today=day)
        admin = await users.get_actor(s, "admin")
        await accounts.add_account(
            s,
            admin,
            "tg",
            "telegram",
            secret_ref="env:CNS_BENCH_TG",
            settings={"base_url": base, "rate_per_second": 1_000_000, "group_rate_per_minute": 1_000_000},
        )
    async with app.transaction() as s:
        await groups.import_groups(s, admin, work / "g.csv", day)
    async with app.transaction() as s:
        ed, ap = await users.get_actor(s, "ed"), await users.get_actor(s, "ap")
        item, _ = await workflow.create(
            s,
            ed,
            title="Thông báo",
            body="Bà con {unit_name} ơi, nộp hồ sơ trực tuyến trên Cổng Dịch vụ công.",
            category="chính quyền số",
            max_bytes=1,
        )
        await workflow.submit(s, ed, item.id or 0)
        await workflow.approve(s, ap, item.id or 0)
        plan = await planning.plan(s, ed, item.id or 0, ["12"], tiers=["village"])
    return app, plan.total


async def dispatch(app: App, concurrency: int, batch: int) -> tuple[float, dict[str, object]]:
    dispatcher = make_dispatcher(app, concurrency=concurrency, batch=batch)
    start = time.perf_counter()
    stats = await dispatcher.run(asyncio.Event(), until_idle=True, idle_sleep=0.05)
    elapsed = time.perf_counter() - start
    await app.close()
    return elapsed, {"sent": stats.sent, "failed": stats.failed, "held": stats.held, "errors": stats.errors}


async def phases(
    work: Path, url: str, base: str, args: argparse.Namespace
) -> tuple[int, float, float, dict[str, object]]:
    """All in one event loop: the database connections belong to it."""
    app, total = await setup(work, url, base, args.groups)
    raw = await raw_rate(base, args.groups, args.concurrency)
    elapsed, stats = await dispatch(app, args.concurrency, args.batch)
    return total, raw, elapsed, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url_file = work / "urls.json"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broadcaster.cli.main",
                "sandbox",
                "--only",
                "telegram",
                "--no-limits",
                "--url-file",
                str(url_file),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                if url_file.exists() and url_file.read_text():
                    break
                time.sleep(0.05)
            base = json.loads(url_file.read_text())["telegram"]
            total, raw, elapsed, stats = asyncio.run(
                phases(work, args.db or f"sqlite:///{work}/bench.db", base, args)
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
    rate = stats["sent"] / elapsed  # type: ignore[operator]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"sandbox Telegram in a separate process, limits off; {total:,} deliveries, "
        f"{args.concurrency} in flight, batches of {args.batch}; database {args.db or 'SQLite'}"
    )
    print(f"raw aiohttp POST sendMessage: {raw:,.0f} requests/s")
    print(
        f"durable dispatch: {stats['sent']:,} sent in {elapsed:.2f} s = {rate:,.0f} deliveries/s "
        f"({rate / raw:.0%} of raw); {stats}"
    )
    print(f"peak RSS of this process: {rss:,.0f} MB")


if __name__ == "__main__":
    main()
