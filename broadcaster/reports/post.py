"""The monthly summary posted to the steering groups (``CNS_<commune>``, ``CNS_tỉnh ...``).

Each unit above the lowest tier (villages) whose team has a chat group gets its own subtree's figures
for the month, in Vietnamese plain text. ``cns worker``/``cns serve`` post last month's summary on the
1st at ``CNS_REPORT_POST_HOUR`` (local; off by default), ``cns report post --month`` at any time.
Facebook Pages are public, so they never get it. A ``report_post`` row per (month, group) is taken
before the send: a summary goes out once however many workers run; a failed one is tried again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.users import Actor, Permission
from broadcaster.domain.errors import CnsError, TransientError
from broadcaster.domain.models import Account, Alert, ChatGroup, ReportPost, Unit, pk
from broadcaster.domain.results import as_dict
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import AccountStatus, GroupMode, GroupStatus, ReportPostState
from broadcaster.reports import monthly as reports
from broadcaster.reports.monthly import UnitFigures
from broadcaster.storage.db import upsert_insert
from broadcaster.units.tree import load_tree

if TYPE_CHECKING:
    from broadcaster.dispatch.dispatcher import Dispatcher
    from broadcaster.storage.app import App

log = logging.getLogger(__name__)
PUBLIC_PLATFORMS = ("facebook",)  # a Page is read by everyone: internal figures stay off it
STALE_CLAIM = timedelta(hours=1)  # a claim left sending this long (its worker died) is taken again


def _n(value: Any) -> str:
    return "chưa rõ" if value is None else f"{value:,}".replace(",", ".")


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


def summary_text(month: str, unit: UnitFigures) -> str:
    """One unit's rolled-up figures for ``month`` as a short plain-text message."""
    t = unit.total
    year, number = month.split("-")
    lines = [
        f"BÁO CÁO CNS THÁNG {int(number)}/{year}: {unit.name}",
        f"• Nhóm: {_n(t.groups)} ({_n(t.groups_active)} hoạt động, "
        f"{_n(t.groups_unreachable)} mất liên lạc); đơn vị có nhóm: {_n(t.units_covered)}/"
        f"{_n(t.units)} ({_pct(t.coverage)})",
        f"• Thành viên: {_n(t.members)}"
        + (f" (chưa rõ ở {_n(t.members_unknown_groups)} nhóm)" if t.members_unknown_groups else ""),
        f"• Tin bài: {_n(t.posts_planned)} dự kiến, {_n(t.posts_delivered)} đã gửi, {_n(t.posts_failed)} lỗi",
    ]
    if t.relay_sent:
        lines.append(
            f"• Nhờ trưởng thôn/bản đăng: {_n(t.relay_sent)}, đã xác nhận {_n(t.posts_confirmed)} "
            f"({_pct(t.relay_confirmation_rate)})"
        )
    lines.append(
        f"• Tương tác: {_n(t.replies)} phản hồi, {_n(t.reactions)} cảm xúc, "
        f"{_n(t.clicks)} lượt mở liên kết (tỉ lệ phản hồi {_pct(t.reply_rate)})"
    )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SummaryPreview:
    """``cns report post --dry-run``: the message one steering group would get."""

    group: str  # its title
    platform: str
    external_id: str
    text: str


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """``cns report post``: the steering groups found and what became of each one's summary."""

    groups: int
    sent: int
    failed: int  # a transient error: tried again
    refused: int  # the platform refused: an alert, not tried again
    already: int  # posted before (by this or another worker)

    @property
    def retry(self) -> bool:
        return self.failed > 0


async def _claim(app: App, month: str, group_id: int) -> bool:
    now = utcnow()
    async with app.transaction() as s:
        added = await s.execute(
            upsert_insert(s)(ReportPost)
            .values(month=month, group_id=group_id, at=now, state=ReportPostState.SENDING)
            .on_conflict_do_nothing(index_elements=["month", "group_id"])
        )
        if added.rowcount:  # type: ignore[attr-defined]
            return True
        retried = await s.execute(
            update(ReportPost)
            .where(
                col(ReportPost.month) == month,
                col(ReportPost.group_id) == group_id,
                or_(
                    col(ReportPost.state) == ReportPostState.FAILED,
                    (col(ReportPost.state) == ReportPostState.SENDING)
                    & (col(ReportPost.at) < now - STALE_CLAIM),
                ),
            )
            .values(state=ReportPostState.SENDING, at=now)
        )
        return bool(retried.rowcount)  # type: ignore[attr-defined]


async def _settle(app: App, month: str, group_id: int, state: ReportPostState, note: str | None) -> None:
    async with app.transaction() as s:
        await s.execute(
            update(ReportPost)
            .where(col(ReportPost.month) == month, col(ReportPost.group_id) == group_id)
            .values(state=state, note=note[:500] if note else None, at=utcnow())
        )


async def steering_posts(
    s: AsyncSession, month: str, *, unit_code: str | None = None, actor: Actor | None = None
) -> list[tuple[ChatGroup, Account, str]]:
    """Each steering group under ``unit_code`` (default: the actor's scope or the whole tree) with its
    unit's summary for ``month``."""
    if actor is not None:
        actor.require(Permission.SEND)
    report = await reports.monthly(s, actor, month, unit_code)
    if not report.units:
        return []
    # The lowest tier's groups are the citizens' own (villages): the figures are for the teams.
    lowest = (await load_tree(s, report.as_of)).schema.names[-1]
    units = {u.code: u for u in report.units if u.level != lowest}
    rows = (
        await s.execute(
            select(ChatGroup, Account, col(Unit.code))
            .join(Account, col(Account.id) == col(ChatGroup.account_id))
            .join(Unit, col(Unit.id) == col(ChatGroup.unit_id))
            .where(
                col(Unit.code).in_(units),
                col(ChatGroup.status) == GroupStatus.ACTIVE,
                col(ChatGroup.mode) == GroupMode.DIRECT,
                col(ChatGroup.platform).not_in(PUBLIC_PLATFORMS),
                col(Account.status) == AccountStatus.ACTIVE,
            )
            .order_by(col(ChatGroup.id))
        )
    ).all()
    return [(group, account, summary_text(month, units[code])) for group, account, code in rows]


async def preview(
    s: AsyncSession, month: str, *, unit_code: str | None = None, actor: Actor | None = None
) -> list[SummaryPreview]:
    """What :func:`post_monthly` would send, group by group, sending nothing."""
    posts = await steering_posts(s, month, unit_code=unit_code, actor=actor)
    return [SummaryPreview(g.title, g.platform, g.external_id, text) for g, _, text in posts]


async def post_monthly(
    app: App,
    dispatcher: Dispatcher,
    month: str,
    *,
    unit_code: str | None = None,
    actor: Actor | None = None,
) -> PostOutcome:
    """Post ``month``'s summary to every steering group under ``unit_code``, once per group."""
    async with app.sessions() as s:
        posts = await steering_posts(s, month, unit_code=unit_code, actor=actor)
    sent = failed = refused = already = 0
    for group, account, text in posts:
        group_id = pk(group.id)
        if not await _claim(app, month, group_id):
            already += 1
            continue
        try:
            await dispatcher.send_notice(account, group, text, f"report-{month}-{group_id}")
        except TransientError as exc:  # rate limits, network: tried again next round or by `cns report post`
            log.warning("monthly summary to group %s failed: %s", group_id, exc)
            await _settle(app, month, group_id, ReportPostState.FAILED, str(exc))
            failed += 1
            continue
        except CnsError as exc:  # refused (gone, forbidden, no token): a person must look, not a loop
            await _settle(app, month, group_id, ReportPostState.REFUSED, str(exc))
            async with app.transaction() as s:
                s.add(
                    Alert(
                        kind="report_post_refused",
                        group_id=group_id,
                        message=f"monthly summary {month} to {group.title!r} refused: {exc}"[:1000],
                    )
                )
            refused += 1
            continue
        await _settle(app, month, group_id, ReportPostState.SENT, None)
        sent += 1
    outcome = PostOutcome(len(posts), sent, failed, refused, already)
    if actor is not None:  # posted by a person (cns report post), not by the worker's schedule
        async with app.transaction() as s:
            await audit.record(
                s, actor.name, "report.post", "report", month, after={"unit": unit_code, **as_dict(outcome)}
            )
    return outcome


def due_month(now: datetime, hour: int | None) -> str | None:
    """The month whose summary is due at ``now`` (local): last month, on the 1st from ``hour`` on."""
    if hour is None:
        return None
    local = now.astimezone(reports.LOCAL)
    if local.day != 1 or local.hour < hour:
        return None
    previous = local.replace(day=1) - timedelta(days=1)
    return f"{previous:%Y-%m}"
