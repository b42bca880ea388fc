"""`cns worker` through a real TCP proxy to PostgreSQL that goes away in the middle of a dispatch
(connections refused and cut, or accepted and never answered): it stops claiming, keeps the outcomes it
holds, says so once, resumes when the database is back, and every delivery is sent exactly once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from adapters.memory import MemorySender
from benchmarks import world
from broadcaster.dispatch.dispatcher import Dispatcher
from broadcaster.domain.models import Delivery
from broadcaster.domain.ports import RenderedMessage, SendResult, Target
from broadcaster.domain.settings import Settings
from broadcaster.runtime.upkeep import upkeep_loop
from broadcaster.storage.app import App
from content.render import render_revision
from scheduler import campaigns
from tests.dbproxy import DbProxy

pytestmark = pytest.mark.postgres

DELIVERIES = 300
CONCURRENCY = 8
OUTAGE = 4.0  # seconds: longer than the lease, so leases must be extended when the database is back
LEASE = 3.0


class SlowPlatform(MemorySender):
    """The in-memory platform taking 20 ms a send, so the outage comes while sends are in flight."""

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        await asyncio.sleep(0.02)
        return await super().send(target, message, key)


async def _rows(url: str) -> tuple[dict[str, int], int, int]:
    """Deliveries per state, re-sent after an unknown outcome, and attempts charged (straight to
    PostgreSQL, not through the proxy)."""
    app = await App.open(Settings(database_url=url))
    try:
        async with app.transaction() as s:
            counts = await s.execute(select(col(Delivery.state), func.count()).group_by(col(Delivery.state)))
            states = {str(state): int(n) for state, n in counts.all()}
            resent, attempts = (
                await s.execute(
                    select(func.sum(col(Delivery.resent_unknown)), func.sum(col(Delivery.attempts)))
                )
            ).one()
    finally:
        await app.close()
    return states, int(resent or 0), int(attempts or 0)


@pytest.mark.parametrize("mode", ["down", "stalled"])
async def test_the_worker_waits_out_a_database_outage_and_loses_nothing(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    app, total = await world.build(tmp_path, pg_url, "http://127.0.0.1:9", DELIVERIES)
    await app.close()
    assert total == DELIVERIES
    proxy = await DbProxy(pg_url).start()
    # A stalled server is noticed by the command timeout (10 s by default; 1 s keeps the test short).
    through = await App.open(Settings(database_url=proxy.url), command_timeout=1.0)
    platform = SlowPlatform("telegram")
    worker = Dispatcher(
        through,
        senders=lambda account: platform,
        render=render_revision,
        batch=40,
        concurrency=CONCURRENCY,
        lease_seconds=LEASE,
        db_retry=(0.2, 1.0),
    )
    caplog.set_level(logging.INFO, logger="cns.dispatcher")
    run = asyncio.create_task(worker.run(asyncio.Event(), until_idle=True, idle_sleep=0.05))
    try:
        deadline = time.monotonic() + 30
        while len(platform.keys) < DELIVERIES // 3:  # the outage comes in the middle
            assert time.monotonic() < deadline and not run.done(), "the dispatch did not start"
            await asyncio.sleep(0.005)
        if mode == "down":
            await proxy.down()
        else:
            proxy.stall()
        sent_when_it_went = len(platform.keys)
        await asyncio.sleep(OUTAGE)
        sent_during = len(platform.keys) - sent_when_it_went
        assert not run.done(), "the worker stopped during the outage"
        await proxy.up()
        stats = await asyncio.wait_for(run, 60)
    finally:
        if not run.done():
            run.cancel()
        await through.close()
        await proxy.close()

    # Every delivery sent exactly once, as the platform saw it and as the database says.
    keys = Counter(platform.keys)
    assert len(keys) == DELIVERIES and set(keys.values()) == {1}
    states, resent, attempts = await _rows(pg_url)
    assert states == {"sent": DELIVERIES}
    assert (resent, attempts) == (0, DELIVERIES)  # nothing became unknown, no attempt charged twice
    assert (stats.sent, stats.recovered, stats.outages) == (DELIVERIES, 0, 1)
    # Only the sends already in flight (and none started after) went out while it was away.
    assert sent_during <= CONCURRENCY
    # Said once, and once when it was back; no traceback.
    records = [r for r in caplog.records if r.name == "cns.dispatcher"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"database 127.0.0.1:{proxy.port}/") and "unavailable" in warnings[0]
    assert warnings[0].endswith("; retrying")
    assert [r for r in records if r.levelno == logging.INFO and "available again" in r.getMessage()]
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]


async def test_the_scheduler_and_upkeep_loops_outlive_an_outage(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = await world.build(tmp_path, pg_url, "http://127.0.0.1:9", 5)
    await app.close()
    proxy = await DbProxy(pg_url).start()
    through = await App.open(Settings(database_url=proxy.url))
    platform = MemorySender("telegram")
    helper = Dispatcher(through, senders=lambda account: platform, render=render_revision)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)
    try:
        await proxy.down()
        loops = [
            asyncio.create_task(campaigns.loop(through, stop, interval=0.1)),
            asyncio.create_task(upkeep_loop(through, stop, helper, every=0.1)),
        ]
        await asyncio.sleep(1.0)
        assert not [task for task in loops if task.done()], "a loop died with the database"
        await proxy.up()
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), 10)
    finally:
        stop.set()
        await helper.close()
        await through.close()
        await proxy.close()
    warned = {r.name: r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    for name, said in (
        ("cns.scheduler", "scheduler tick skipped"),
        ("broadcaster.runtime.upkeep", "upkeep skipped"),
    ):
        assert warned.get(name, "").startswith(f"{said}: database 127.0.0.1:{proxy.port}/"), warned
    assert not [r for r in caplog.records if r.exc_info], "an outage is one line, not a traceback"
