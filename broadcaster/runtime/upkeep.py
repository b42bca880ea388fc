"""Periodic work beside the dispatcher (``cns worker`` and ``cns serve``): member-count snapshots,
relay follow-up (a reminder to the admins, then the commune team told) and, on the 1st, last month's
summary to the steering groups (``broadcaster.reports.post``).

Member counts are read through the dispatcher's own per-account token buckets, so polling never pushes
an account over its platform limit while a broadcast is running. A platform that cannot count (relay,
an error) leaves the count unknown: no snapshot is written, nothing is stored as 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlmodel import col

from broadcaster.domain.errors import CnsError
from broadcaster.domain.models import (
    Account,
    Alert,
    ChatGroup,
    Delivery,
    Dispatch,
    MemberSnapshot,
    Unit,
    UnitLink,
    pk,
)
from broadcaster.domain.ports import Target
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import (
    DISPATCH_FOLLOWED_UP,
    AccountStatus,
    DeliveryState,
    DispatchStatus,
    GroupMode,
    GroupStatus,
)
from broadcaster.reports.post import due_month, post_monthly

if TYPE_CHECKING:
    from broadcaster.dispatch.dispatcher import Dispatcher
    from broadcaster.storage.app import App

log = logging.getLogger(__name__)
POLL_BATCH = 200


async def poll_members(app: App, dispatcher: Dispatcher, *, batch: int = POLL_BATCH) -> int:
    """Snapshot the member count of direct groups not counted within ``reach_interval_hours``."""
    cutoff = utcnow() - timedelta(hours=app.settings.reach_interval_hours)
    last = (
        select(col(MemberSnapshot.group_id), func.max(col(MemberSnapshot.at)).label("at"))
        .group_by(col(MemberSnapshot.group_id))
        .subquery()
    )
    async with app.sessions() as s:
        rows = (
            await s.execute(
                select(ChatGroup, Account)
                .join(Account, col(Account.id) == col(ChatGroup.account_id))
                .outerjoin(last, last.c.group_id == col(ChatGroup.id))
                .where(
                    col(ChatGroup.status) == GroupStatus.ACTIVE,
                    col(ChatGroup.mode) == GroupMode.DIRECT,
                    col(Account.status) == AccountStatus.ACTIVE,
                    (last.c.at.is_(None)) | (last.c.at < cutoff),
                )
                .order_by(last.c.at.is_not(None), last.c.at, col(ChatGroup.id))
                .limit(batch)
            )
        ).all()
    taken = 0
    for group, account in rows:
        try:
            await dispatcher.take_turn(account)
            count = await dispatcher.sender(account).member_count(
                Target(platform=group.platform, external_id=group.external_id, title=group.title)
            )
        except CnsError as exc:  # not countable now (rate limit, network, gone): stays unknown
            log.debug("member count of group %s: %s", group.id, exc)
            continue
        if count is None:
            continue
        async with app.transaction() as s:
            s.add(MemberSnapshot(group_id=pk(group.id), members=count, source="poll"))
        taken += 1
    return taken


async def follow_up_relays(app: App, dispatcher: Dispatcher) -> dict[str, int]:
    """Relay posts not confirmed in time: re-send the package once (the reminder, through the
    dispatcher and its limits); later, tell the commune team's groups which villages have not confirmed."""
    now = utcnow()
    remind_before = now - timedelta(hours=app.settings.confirm_remind_hours)
    escalate_before = now - timedelta(hours=app.settings.confirm_escalate_hours)
    # A cancelled (or paused) dispatch is not chased: the editor stopped it.
    live = select(col(Dispatch.id)).where(col(Dispatch.status).in_(DISPATCH_FOLLOWED_UP))
    async with app.transaction() as s:
        reminded = (
            (
                await s.execute(
                    update(Delivery)
                    .where(
                        col(Delivery.state) == DeliveryState.AWAITING_CONFIRMATION,
                        col(Delivery.reminders) == 0,
                        col(Delivery.sent_at) < remind_before,
                        col(Delivery.dispatch_id).in_(live),
                    )
                    .values(state=DeliveryState.QUEUED, reminders=1, next_attempt_at=now, updated_at=now)
                    .returning(col(Delivery.dispatch_id))
                    .execution_options(synchronize_session=False)
                )
            )
            .scalars()
            .all()
        )
        if reminded:  # the dispatcher claims only from running dispatches: a finished one runs again
            await s.execute(
                update(Dispatch)
                .where(col(Dispatch.id).in_(set(reminded)), col(Dispatch.status) == DispatchStatus.DONE)
                .values(status=DispatchStatus.RUNNING)
                .execution_options(synchronize_session=False)
            )
        due = (
            await s.execute(
                select(Delivery, ChatGroup, Unit)
                .join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
                .join(Unit, col(Unit.id) == col(Delivery.unit_id))
                .where(
                    col(Delivery.state) == DeliveryState.AWAITING_CONFIRMATION,
                    col(Delivery.escalated_at).is_(None),
                    col(Delivery.sent_at) < escalate_before,
                    col(Delivery.dispatch_id).in_(live),
                )
            )
        ).all()
        by_parent: dict[int | None, list[str]] = defaultdict(list)
        for delivery, group, unit in due:
            delivery.escalated_at = now
            parent = (
                await s.execute(
                    select(col(UnitLink.parent_id)).where(
                        col(UnitLink.child_id) == unit.id, col(UnitLink.valid_to).is_(None)
                    )
                )
            ).scalar()
            by_parent[parent].append(f"{group.title} (bài gửi {delivery.dispatch_id})")
        for waiting in by_parent.values():
            s.add(
                Alert(
                    kind="relay_unconfirmed",
                    message=f"{len(waiting)} relay posts not confirmed after "
                    f"{app.settings.confirm_escalate_hours:g} h: " + "; ".join(waiting)[:1500],
                )
            )
    # Sent after the commit: no write lock is held while the platforms answer.
    for parent, waiting in by_parent.items():
        if parent is not None:
            await _tell_team(app, dispatcher, parent, waiting)
    return {"reminded": len(reminded), "escalated": len(due)}


async def _tell_team(app: App, dispatcher: Dispatcher, unit_id: int, waiting: list[str]) -> None:
    async with app.sessions() as s:
        rows = (
            await s.execute(
                select(ChatGroup, Account)
                .join(Account, col(Account.id) == col(ChatGroup.account_id))
                .where(
                    col(ChatGroup.unit_id) == unit_id,
                    col(ChatGroup.status) == GroupStatus.ACTIVE,
                    col(ChatGroup.mode) == GroupMode.DIRECT,
                    col(Account.status) == AccountStatus.ACTIVE,
                )
            )
        ).all()
    text = "Tổ CNS: các nhóm sau chưa xác nhận đã đăng bài, đề nghị nhắc trưởng thôn/bản:\n" + "\n".join(
        f"• {w}" for w in waiting[:50]
    )
    for group, account in rows:
        try:
            await dispatcher.send_notice(account, group, text, f"escalation-{unit_id}-{utcnow():%Y%m%d%H}")
        except CnsError as exc:  # the alert above stays; the team is told another way
            log.warning("escalation to group %s failed: %s", group.id, exc)


async def upkeep_loop(app: App, stop: asyncio.Event, helper: Dispatcher, every: float = 60.0) -> None:
    """Relay follow-up, member counts and the monthly summary, every ``every`` seconds until ``stop``;
    ``helper`` is the worker's dispatcher, whose adapters and rate limits the upkeep sends share."""
    summarised: set[str] = set()  # months whose summaries all went out (or were refused) here
    while not stop.is_set():
        try:
            await follow_up_relays(app, helper)
            await poll_members(app, helper)
            month = due_month(utcnow(), app.settings.report_post_hour)
            if (
                month is not None
                and month not in summarised
                and not (await post_monthly(app, helper, month)).retry
            ):
                summarised.add(month)
        except Exception as exc:  # upkeep must never stop the worker; it tries again next round
            unavailable = app.unavailable(exc)
            if unavailable is None:
                log.exception("upkeep")
            else:  # one line per round, not a traceback
                log.warning("upkeep skipped: %s", unavailable)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
