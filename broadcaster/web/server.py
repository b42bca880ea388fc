"""The aiohttp application of ``cns serve`` and its background loop (processing stored events)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import func, select, text
from sqlmodel import col

from broadcaster.domain.models import ContentRevision, Delivery, InboundEvent
from broadcaster.domain.ports import HookCodec
from broadcaster.domain.states import EVENT_OUTCOMES, InboundEventStatus
from broadcaster.inbound.privacy import purge_raw
from broadcaster.inbound.processing import CHUNK, EventStore, process_pending
from broadcaster.storage.app import App
from broadcaster.web import api, hooks, pages
from broadcaster.web.state import STATE, WebState

log = logging.getLogger(__name__)
PURGE_EVERY = 3600.0


def create_app(
    app: App,
    codecs: Mapping[str, HookCodec],
    links_of: Callable[[ContentRevision], list[str]],
    *,
    process: bool = True,
) -> web.Application:
    """The web application over ``app``; with ``process`` it also turns stored events into interactions."""
    state = WebState(app, codecs, EventStore(app), links_of)
    web_app = web.Application(middlewares=[hooks.never_500], client_max_size=app.settings.hook_max_bytes + 1)
    web_app[STATE] = state
    web_app.router.add_post("/hooks/{platform}/{account}", hooks.receive)
    web_app.router.add_get("/hooks/facebook/{account}", hooks.facebook_challenge)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/metrics", metrics)
    web_app.router.add_route("GET", "/l/{code}", pages.tracked_link)
    web_app.router.add_route("HEAD", "/l/{code}", pages.tracked_link)
    web_app.router.add_route("GET", "/r/{token}", pages.confirmation)
    web_app.router.add_route("POST", "/r/{token}", pages.confirmation)
    web_app.router.add_get("/a/{sha256}", pages.attachment)
    api.register(web_app)
    if process:
        web_app.cleanup_ctx.append(_processor)
    web_app.on_cleanup.append(_close_store)
    return web_app


async def _close_store(web_app: web.Application) -> None:
    await web_app[STATE].store.close()


async def _processor(web_app: web.Application) -> AsyncIterator[None]:
    state = web_app[STATE]
    task = asyncio.create_task(process_loop(state))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


BURST = 0.2  # an event stored this recently means more are arriving
# During a burst, processing pauses this long after each chunk (>= ~90 events/s still processed): the
# CPU goes to answering. Measured with benchmarks/webhook_ingest.py: ~2,400 -> ~2,850 accepted/s, and the
# whole burst processed sooner (38 s instead of 46 s after it) as the two no longer contend for SQLite.
YIELD = 0.5


async def process_loop(state: WebState, idle: float = 1.0) -> None:
    """Process stored events as they arrive (woken by the hooks), and purge expired raw bodies hourly.

    Answering the platforms comes first (they retry, and drop webhooks that answer slowly): while a
    burst is arriving, events are processed one chunk at a time with a pause between chunks, and
    at full speed once it has passed."""
    last_purge = 0.0
    outage = False  # the database is unavailable: said once, and once when it is back
    while True:
        try:
            burst = time.monotonic() - state.last_hook < BURST
            stats = await process_pending(state.app, state.codecs, limit=CHUNK if burst else 500)
            if burst:
                await asyncio.sleep(YIELD)
            for status in EVENT_OUTCOMES:
                state.counters[("event", status)] += getattr(stats, status)
            if time.monotonic() - last_purge > PURGE_EVERY:
                async with state.app.transaction() as s:
                    await purge_raw(s, state.app.settings.raw_retention_days)
                last_purge = time.monotonic()
            busy = stats.done + stats.unmatched + stats.ignored + stats.failed > 0
            if outage:
                log.info("processing inbound events again: the database is back")
                outage = False
        except Exception as exc:  # the database went away: keep the loop, try again shortly
            unavailable = state.app.unavailable(exc)
            if unavailable is None:
                log.exception("processing inbound events")
            elif not outage:
                log.warning("processing inbound events paused: %s; retrying", unavailable)
            outage = outage or unavailable is not None
            busy = False
        if not busy:
            state.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), idle)


async def _pending_events(state: WebState) -> int:
    async with state.app.sessions() as s:
        await s.execute(text("SELECT 1"))
        return int(
            (
                await s.execute(
                    select(func.count())
                    .select_from(InboundEvent)
                    .where(col(InboundEvent.status) == InboundEventStatus.PENDING)
                )
            ).scalar_one()
        )


async def healthz(request: web.Request) -> web.Response:
    """200 with the pending events, or 503 + Retry-After when the database does not answer within
    ``hooks.DEADLINE`` (down, stalled, or too slow to take webhooks in time)."""
    state = request.app[STATE]
    try:
        pending = await hooks.within(hooks.DEADLINE, _pending_events(state))
    except Exception as exc:
        hooks.unavailable_answer(state, exc, "/healthz")
        reason = "no answer in time" if isinstance(exc, hooks.TooSlow) else type(exc).__name__
        return web.json_response(
            {"status": "unavailable", "database": reason},
            status=503,
            headers={"Retry-After": hooks.RETRY_AFTER},
        )
    return web.json_response(
        {
            "status": "ok",
            "database": "ok",
            "pending_events": pending,
            "uptime_s": round(time.time() - state.started),
        }
    )


async def _gauges(state: WebState) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    async with state.app.sessions() as s:
        events = (
            await s.execute(select(col(InboundEvent.status), func.count()).group_by(col(InboundEvent.status)))
        ).all()
        deliveries = (
            await s.execute(select(col(Delivery.state), func.count()).group_by(col(Delivery.state)))
        ).all()
    return [(str(k), int(v)) for k, v in events], [(str(k), int(v)) for k, v in deliveries]


def _labels(**pairs: str) -> str:
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in pairs.items()
    )
    return "{" + body + "}"


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format: request and event counters of this process, queue sizes from the database."""
    state = request.app[STATE]
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, Any]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    hooks_seen = [(k, v) for k, v in state.counters.items() if k[0] == "hook"]
    family(
        "cns_hook_requests_total",
        "counter",
        "Webhook requests answered, by platform and HTTP status.",
        [(_labels(platform=k[1], status=k[2]), v) for k, v in sorted(hooks_seen)],
    )
    family(
        "cns_inbound_events_processed_total",
        "counter",
        "Stored webhook events processed by this process, by outcome.",
        [(_labels(status=k[1]), v) for k, v in sorted(state.counters.items()) if k[0] == "event"],
    )
    family(
        "cns_link_requests_total",
        "counter",
        "Tracked link requests, by outcome (click, repeat, preview, invalid).",
        [(_labels(outcome=k[1]), v) for k, v in sorted(state.counters.items()) if k[0] == "link"],
    )
    family(
        "cns_confirmations_total",
        "counter",
        "Relay confirmation requests, by outcome.",
        [(_labels(outcome=k[1]), v) for k, v in sorted(state.counters.items()) if k[0] == "confirmation"],
    )
    try:
        events, deliveries = await hooks.within(hooks.DEADLINE, _gauges(state))
    except Exception:  # the database is unavailable: the counters of this process still answer
        events, deliveries = [], []
        lines.append("cns_database_up 0")
    else:
        lines.append("cns_database_up 1")
    family(
        "cns_inbound_events",
        "gauge",
        "Stored webhook events by status.",
        [(_labels(status=str(k)), v) for k, v in sorted(events)],
    )
    family(
        "cns_deliveries",
        "gauge",
        "Deliveries by state.",
        [(_labels(state=str(k)), v) for k, v in sorted(deliveries)],
    )
    family(
        "cns_events_stored_total",
        "counter",
        "Webhook events written by this process.",
        [("", state.store.stored)],
    )
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
