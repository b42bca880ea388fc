"""Benchmark: plan a dispatch to 100,000 village groups and report deliveries planned per second.

Method: a fresh SQLite database in a temporary folder; the real Lai Châu 2025 structure (province and
38 communes) plus N generated villages spread over the communes, imported with `import_units`; one
Zalo group per village imported with `import_groups`; one approved content item. Then `planning.plan`
runs for scope "12" (the province), tier "village": the audience expansion (tree load, scope checks)
and the set-based INSERT ... SELECT of the deliveries, committed. The timed part is only the planning
transaction (open to commit). It is run once cold, then re-planned (idempotent: adds nothing), and
the figures are printed. Run: `make bench` or `python benchmarks/plan_dispatch.py [--villages N] [--db URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import tempfile
import time
from datetime import date
from pathlib import Path

from broadcaster.bootstrap import initialise
from broadcaster.cli.demo import data_file
from broadcaster.directory import accounts, groups, users
from broadcaster.dispatch import planning
from broadcaster.domain.settings import Settings
from broadcaster.domain.timeutil import today
from broadcaster.editorial import workflow
from broadcaster.units.importer import import_units
from broadcaster.units.tree import load_tree

REFORM = date(2025, 7, 1)


async def main(villages: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        app, _, _ = await initialise(Settings(database_url=url or f"sqlite:///{work}/bench.db"))
        day = today()
        t0 = time.perf_counter()
        async with app.transaction() as s:
            await users.add_user(s, None, "admin", "admin", today=day)
        async with app.transaction() as s:
            await import_units(s, data_file("laichau-2025-units.csv"), REFORM)
            tree = await load_tree(s, day)
        communes = sorted(n.code for n in tree.nodes.values() if n.level == "commune")
        units_csv = work / "villages.csv"
        groups_csv = work / "groups.csv"
        with units_csv.open("w", newline="") as uf, groups_csv.open("w", newline="") as gf:
            u, g = csv.writer(uf), csv.writer(gf)
            u.writerow(["code", "name", "type", "level", "parent_code"])
            g.writerow(["unit_code", "account", "external_id", "title"])
            for i in range(villages):
                commune = communes[i % len(communes)]
                code = f"{commune}-{i:06d}"
                u.writerow([code, f"Bản {i}", "bản", "village", commune])
                g.writerow([code, "zalo", f"gmf-{i}", f"CNS_Bản {i}_{commune}"])
        async with app.transaction() as s:
            await import_units(s, units_csv, REFORM)
            await users.add_user(s, "admin", "ed", "editor", today=day)
            await users.add_user(s, "admin", "ap", "approver", today=day)
            admin = await users.get_actor(s, "admin")
            await accounts.add_account(s, admin, "zalo", "zalo", secret_ref="env:ZALO")
        async with app.transaction() as s:
            await groups.import_groups(s, admin, groups_csv, day)
        async with app.transaction() as s:
            ed, ap = await users.get_actor(s, "ed"), await users.get_actor(s, "ap")
            item, _ = await workflow.create(
                s, ed, title="T", body="Chào {unit_name}", category="x", max_bytes=1
            )
            await workflow.submit(s, ed, item.id or 0)
            await workflow.approve(s, ap, item.id or 0)
        setup = time.perf_counter() - t0

        t1 = time.perf_counter()
        async with app.transaction() as s:
            result = await planning.plan(s, ed, item.id or 0, ["12"], tiers=["village"])
        cold = time.perf_counter() - t1
        t2 = time.perf_counter()
        async with app.transaction() as s:
            again = await planning.plan(s, ed, item.id or 0, ["12"], tiers=["village"])
        warm = time.perf_counter() - t2
        await app.close()
    if result.added != villages or again.added != 0:
        raise SystemExit(f"unexpected: planned {result.added}, re-planned {again.added}")
    print(f"database: {'sqlite (temporary file)' if url is None else url}")
    print(f"setup (import {villages:,} villages and groups, approve content): {setup:.1f} s")
    rate = result.added / cold
    print(f"plan dispatch: {result.added:,} deliveries in {cold:.3f} s = {rate:,.0f} deliveries/s")
    print(f"re-plan same dispatch (idempotent, adds {again.added}): {warm:.3f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--villages", type=int, default=100_000)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.villages, args.db))
