"""A broadcast-sized world for benchmarks and the scale-out test: the Lai Châu 2025 communes, N
generated villages with one Telegram group each, one approved post and its dispatch, planned."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from broadcaster.bootstrap import initialise
from broadcaster.cli.demo import data_file
from broadcaster.directory import accounts, groups, users
from broadcaster.dispatch import planning
from broadcaster.domain.settings import Settings
from broadcaster.domain.timeutil import today
from broadcaster.editorial import workflow
from broadcaster.storage.app import App
from broadcaster.units.importer import import_units
from broadcaster.units.tree import load_tree

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
TOKEN_ENV = "CNS_BENCH_TG"


@contextlib.contextmanager
def fresh_database(url: str | None, work: Path, name: str = "bench.db") -> Iterator[str]:
    """The benchmark's database: a SQLite file in ``work`` by default; for a PostgreSQL URL, a new
    database on that server, dropped afterwards (a benchmark needs an empty one, and a second run
    would find the first run's users and dispatch)."""
    if not url:
        yield f"sqlite:///{work}/{name}"
        return
    if not url.startswith("postgresql"):
        yield url
        return
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(url)
    scratch = f"cns_bench_{uuid.uuid4().hex[:10]}"

    def execute(sql: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(False))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    execute(f'CREATE DATABASE "{scratch}"')
    try:
        yield server.set(database=scratch).render_as_string(hide_password=False)
    finally:
        execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def start_sandbox(work: Path, *, limits: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """`cns sandbox --only telegram` in its own process; returns it and its URL."""
    url_file = work / "sandbox-urls.json"
    command = [
        sys.executable,
        "-m",
        "broadcaster.cli.main",
        "sandbox",
        "--only",
        "telegram",
        "--url-file",
        str(url_file),
    ]
    if not limits:
        command.append("--no-limits")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    for _ in range(400):
        if url_file.exists() and url_file.read_text():
            break
        time.sleep(0.05)
    import json

    return server, json.loads(url_file.read_text())["telegram"]


async def build(work: Path, url: str, base: str, n: int, *, rate: float | None = None) -> tuple[App, int]:
    """The world in the database at ``url``; ``rate`` None lifts our own pacing (server limits off)."""
    os.environ[TOKEN_ENV] = TOKEN
    app, _, _ = await initialise(Settings(database_url=url))
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
    settings: dict[str, object] = {"base_url": base}
    if rate is None:
        settings.update(rate_per_second=1_000_000, group_rate_per_minute=1_000_000)
    else:
        settings["rate_per_second"] = rate
    async with app.transaction() as s:
        await import_units(s, work / "v.csv", date(2025, 7, 1))
        await users.add_user(s, "admin", "ed", "editor", today=day)
        await users.add_user(s, "admin", "ap", "approver", today=day)
        admin = await users.get_actor(s, "admin")
        await accounts.add_account(
            s, admin, "tg", "telegram", secret_ref=f"env:{TOKEN_ENV}", settings=settings
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


async def delivery_counts(url: str) -> tuple[dict[str, int], int]:
    """Deliveries per state in the database at ``url``, and how many were re-sent after a crash."""
    from sqlalchemy import func, select

    from broadcaster.domain.models import Delivery

    app = await App.open(Settings(database_url=url))
    try:
        async with app.transaction() as s:
            rows = await s.execute(select(Delivery.state, func.count()).group_by(Delivery.state))  # type: ignore[call-overload]
            resent = (await s.execute(select(func.sum(Delivery.resent_unknown)))).scalar_one()
            return dict(rows.all()), int(resent or 0)
    finally:
        await app.close()
