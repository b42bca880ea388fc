"""The JSON API (``/api/...``): read access to content, dispatches, deliveries, the engagement log and
reports, for dashboards and scripts. ``Authorization: Bearer <token>`` (``cns users token``); every answer
is limited to what the token's user may see (role and unit scope), as on the command line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from broadcaster.directory import alerts
from broadcaster.directory.suggestions import STATUSES, Suggestion, list_suggestions
from broadcaster.directory.users import Actor, actor_for_token
from broadcaster.dispatch import control as dispatch_control
from broadcaster.dispatch.control import DeliveryRow, DispatchProgress
from broadcaster.domain.errors import CnsError, DatabaseUnavailable, InputError, NotFound, PermissionDenied
from broadcaster.domain.results import to_data
from broadcaster.domain.states import SuggestionStatus
from broadcaster.domain.timeutil import parse_time, today
from broadcaster.inbound.events import UnmatchedEvent, list_unmatched
from broadcaster.reports import engagement
from broadcaster.reports import monthly as reports
from broadcaster.web.state import STATE

STATUS = {NotFound: 404, PermissionDenied: 403, InputError: 400}


def register(app: web.Application) -> None:
    for path, handler in (
        ("/api/content", content_list),
        ("/api/content/{id}", content_show),
        ("/api/dispatches", dispatches),
        ("/api/dispatches/{id}", dispatch),
        ("/api/dispatches/{id}/deliveries", deliveries),
        ("/api/interactions", interactions),
        ("/api/reports/monthly", monthly),
        ("/api/unmatched", unmatched),
        ("/api/suggestions", suggestions),
        ("/api/alerts", alert_list),
    ):
        app.router.add_get(path, handler)


def _error(exc: CnsError) -> web.Response:
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    return web.json_response({"error": str(exc)}, status=status)


Work = Callable[[AsyncSession, Actor], Awaitable[object]]


async def _call(request: web.Request, work: Work) -> web.Response:
    """Authenticate, run ``work`` (a service call returning a typed result) in one transaction, and
    answer its :func:`to_data` as JSON: the same data as ``cns --json``."""
    state = request.app[STATE]
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    try:
        async with state.app.transaction() as s:
            actor = await actor_for_token(s, token) if token else None
            if actor is None:
                return web.json_response(
                    {"error": "a valid API token is required (Authorization: Bearer ...)"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            result = await work(s, actor)
    except DatabaseUnavailable:
        raise  # not the request's fault: the middleware answers 503 + Retry-After
    except CnsError as exc:
        return _error(exc)
    return web.json_response(to_data(result), dumps=_dumps)


def _dumps(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _int(request: web.Request, name: str, *, query: bool = True) -> int | None:
    raw = request.query.get(name) if query else request.match_info.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise InputError(f"{name} must be a number")
    return int(raw)


async def content_list(request: web.Request) -> web.Response:
    from broadcaster.editorial import workflow

    status = request.query.get("status")

    async def work(s: AsyncSession, actor: Actor) -> list[workflow.ContentSummary]:
        return await workflow.list_items(s, status, actor=actor, today=today())

    return await _call(request, work)


async def content_show(request: web.Request) -> web.Response:
    from broadcaster.editorial import workflow

    async def work(s: AsyncSession, actor: Actor) -> workflow.ContentDetail:
        return await workflow.show(s, _int(request, "id", query=False) or 0, actor=actor, today=today())

    return await _call(request, work)


async def _visible(s: AsyncSession, actor: Actor, dispatch_id: int) -> None:
    dispatch_row = await dispatch_control._dispatch(s, dispatch_id)
    await dispatch_control._check_scope(s, actor, dispatch_row, "see this dispatch")


async def dispatches(request: web.Request) -> web.Response:
    async def work(s: AsyncSession, actor: Actor) -> list[DispatchProgress]:
        rows = await dispatch_control.list_dispatches(s, limit=min(_int(request, "limit") or 50, 500))
        visible = []
        for row in rows:
            try:
                await _visible(s, actor, row.dispatch)
            except PermissionDenied:
                continue
            visible.append(row)
        return visible

    return await _call(request, work)


async def dispatch(request: web.Request) -> web.Response:
    async def work(s: AsyncSession, actor: Actor) -> DispatchProgress:
        dispatch_id = _int(request, "id", query=False) or 0
        await _visible(s, actor, dispatch_id)
        return await dispatch_control.status(s, dispatch_id)

    return await _call(request, work)


async def deliveries(request: web.Request) -> web.Response:
    async def work(s: AsyncSession, actor: Actor) -> list[DeliveryRow]:
        dispatch_id = _int(request, "id", query=False) or 0
        await _visible(s, actor, dispatch_id)
        return await dispatch_control.list_deliveries(
            s,
            dispatch_id,
            state=request.query.get("state") or None,
            after=_int(request, "after"),
            limit=min(_int(request, "limit") or 500, 5000),
        )

    return await _call(request, work)


async def interactions(request: web.Request) -> web.Response:
    q = request.query

    async def work(s: AsyncSession, actor: Actor) -> list[engagement.InteractionRow]:
        kinds = tuple(k for k in q.get("kind", "reply").split(",") if k)
        log_filter = engagement.LogFilter(
            unit_code=q.get("unit") or None,
            since=parse_time(q["since"]) if q.get("since") else None,
            until=parse_time(q["until"]) if q.get("until") else None,
            dispatch_id=_int(request, "dispatch"),
            content_id=_int(request, "content"),
            kinds=kinds,
            platform=q.get("platform") or None,
            tier=q.get("tier") or None,
            limit=_int(request, "limit") or 200,
        )
        return await engagement.interactions(s, actor, log_filter, today())

    return await _call(request, work)


async def monthly(request: web.Request) -> web.Response:
    month = request.query.get("month") or date.today().strftime("%Y-%m")
    unit = request.query.get("unit") or None

    async def work(s: AsyncSession, actor: Actor) -> reports.MonthlyReport | reports.EmptyMonthlyReport:
        return await reports.monthly(s, actor, month, unit)

    return await _call(request, work)


async def unmatched(request: web.Request) -> web.Response:
    async def work(s: AsyncSession, actor: Actor) -> list[UnmatchedEvent]:
        return await list_unmatched(s, actor, limit=min(_int(request, "limit") or 100, 1000))

    return await _call(request, work)


async def suggestions(request: web.Request) -> web.Response:
    async def work(s: AsyncSession, actor: Actor) -> list[Suggestion]:
        status = request.query.get("status", SuggestionStatus.PENDING)
        if status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}")
        return await list_suggestions(s, actor, today=today(), status=status)

    return await _call(request, work)


async def alert_list(request: web.Request) -> web.Response:
    """``?open=1``: only those nobody has acknowledged."""
    open_only = request.query.get("open", "") in {"1", "true", "yes"}

    async def work(s: AsyncSession, actor: Actor) -> list[alerts.AlertInfo]:
        return await alerts.list_alerts(
            s, actor, today=today(), open_only=open_only, limit=_int(request, "limit") or 200
        )

    return await _call(request, work)
