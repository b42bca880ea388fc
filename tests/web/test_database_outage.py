"""`cns serve` with PostgreSQL stalled (accepting connections, answering nothing) or down, through a
real TCP proxy: webhooks and /healthz answer 503 + Retry-After within Zalo's 2 s, then 200 again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from broadcaster.bootstrap import initialise
from broadcaster.domain.settings import Settings
from broadcaster.storage.app import App
from broadcaster.web import hooks
from tests.dbproxy import DbProxy
from tests.web.test_hooks import tg_reply
from tests.web.world import build, client

pytestmark = pytest.mark.postgres

ZALO_DEADLINE = 2.0
BOUND = 2.5  # a deadline checked on a shared machine, not a performance figure


@dataclass
class Served:
    web: TestClient[Any, Any]
    proxy: DbProxy
    headers: dict[str, str]
    chat: str
    message_id: str


@pytest.fixture
async def served(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    """The inbound world on PostgreSQL, and the web app reaching it through the proxy."""
    app, _, _ = await initialise(Settings(database_url=pg_url))
    try:
        world = await build(app, monkeypatch)
    finally:
        await app.close()
    proxy = await DbProxy(pg_url).start()
    through = await App.open(Settings(database_url=proxy.url))
    web = await client(through)
    delivery = world.deliveries["-1000000003451"]
    headers = {"X-Telegram-Bot-Api-Secret-Token": world.secrets["tg"], "Content-Type": "application/json"}
    try:
        yield Served(web, proxy, headers, "-1000000003451", delivery.message_ids[0])
    finally:
        await proxy.up()
        await web.close()
        await through.close()
        await proxy.close()


async def _webhook(served: Served, update_id: int) -> ClientResponse:
    body = tg_reply(update_id, served.chat, served.message_id)
    return await served.web.post("/hooks/telegram/tg", data=body, headers=served.headers)


async def _timed(request: Callable[[], Awaitable[ClientResponse]]) -> tuple[ClientResponse, float]:
    start = time.monotonic()
    response = await request()
    await response.read()
    return response, time.monotonic() - start


async def _answers(served: Served, update_id: int) -> dict[str, tuple[int, str | None, float]]:
    """The webhook of a known account, one naming an account not looked up yet, and /healthz:
    (status, Retry-After, seconds) each."""
    web = served.web
    requests: dict[str, Callable[[], Awaitable[ClientResponse]]] = {
        "webhook": lambda: _webhook(served, update_id),
        "webhook, account not cached": lambda: web.post("/hooks/zalo/zalo", data=b"{}"),
        "healthz": lambda: web.get("/healthz"),
    }
    answers = {}
    for name, request in requests.items():
        response, seconds = await _timed(request)
        answers[name] = (response.status, response.headers.get("Retry-After"), seconds)
    return answers


async def test_a_stalled_database_gets_a_503_with_retry_after_in_time(
    served: Served, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = served.web
    monkeypatch.setitem(hooks._warned, "at", -hooks.WARN_EVERY)  # as if no warning came before
    # Before: stored, and the pool holds connections that will stall with the server.
    assert (await _webhook(served, 1)).status == 200
    assert (await web.get("/healthz")).status == 200

    served.proxy.stall()
    for update_id in (2, 3):  # the second time, the requests of the first still wait in the background
        answers = await _answers(served, update_id)
        for name, (status, retry_after, seconds) in answers.items():
            assert (status, retry_after) == (503, "5"), name
            assert seconds < BOUND, f"{name} answered after {seconds:.2f} s (Zalo waits {ZALO_DEADLINE} s)"

    # One warning naming the database for all these 503s, no traceback.
    said = [r for r in caplog.records if r.name.startswith("broadcaster.web")]
    assert [r.levelno for r in said] == [logging.WARNING], [r.getMessage() for r in said]
    assert f"answered 503: database 127.0.0.1:{served.proxy.port}/" in said[0].getMessage()

    await served.proxy.up()
    answers = await _back(served, 4)
    assert answers["webhook"][0] == 200 and answers["healthz"][0] == 200


async def test_a_database_down_gets_a_503_then_200_when_it_is_back(served: Served) -> None:
    assert (await _webhook(served, 1)).status == 200
    await served.proxy.down()
    answers = await _answers(served, 2)
    for name, (status, retry_after, seconds) in answers.items():
        assert (status, retry_after) == (503, "5"), name
        assert seconds < BOUND, name
    await served.proxy.up()
    answers = await _back(served, 3)
    assert answers["webhook"][0] == 200 and answers["healthz"][0] == 200


async def _back(served: Served, update_id: int) -> dict[str, tuple[int, str | None, float]]:
    """The answers once the database is back (the first requests may still find broken connections)."""
    for attempt in range(20):
        answers = await _answers(served, update_id + attempt)
        if answers["webhook"][0] == 200 and answers["healthz"][0] == 200:
            return answers
        await asyncio.sleep(0.5)
    return answers
