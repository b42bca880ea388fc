"""Campaigns: a named series of posts, one per occurrence of an RRULE in Asia/Ho_Chi_Minh.

The scheduler loop (run inside ``cns worker``) looks for campaigns whose next occurrence has come and
plans a dispatch of the next post of the series, with the campaign's scope, tiers, platforms, waves and
quiet hours, on behalf of the campaign's creator (so their scope is checked on the day it goes out).
A worker that was down sends only the latest missed occurrence, once, and records the others as
skipped: a week of posts arriving together would help nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dateutil.rrule import rrulestr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.accounts import check_platform
from broadcaster.directory.users import Actor, Permission, get_actor
from broadcaster.dispatch import planning
from broadcaster.domain.errors import CnsError, Conflict, DatabaseUnavailable, InputError, NotFound
from broadcaster.domain.models import Alert, Campaign, ContentItem, User, pk
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import CampaignStatus
from broadcaster.domain.timeutil import LOCAL_TZ
from broadcaster.storage.app import App
from broadcaster.units.tree import load_tree
from scheduler.timing import parse_quiet_plan

log = logging.getLogger("cns.scheduler")
_EPSILON = timedelta(seconds=1)


def parse_rrule(text: str, starts_at: datetime) -> Any:
    """An RFC 5545 recurrence rule, anchored at ``starts_at`` (local time); a clear error otherwise."""
    try:
        return rrulestr(text.strip(), dtstart=starts_at.astimezone(LOCAL_TZ))
    except (ValueError, TypeError) as exc:
        raise InputError(f"invalid RRULE {text!r}: {exc}") from None


async def add_campaign(
    session: AsyncSession,
    actor: Actor,
    name: str,
    *,
    posts: Sequence[int],
    rrule: str,
    starts_at: datetime,
    scope: Sequence[str],
    tiers: Sequence[str] = (),
    platforms: Sequence[str] = (),
    waves: dict[str, int] | None = None,
    quiet_hours: str = "21:00-06:00",
) -> Campaign:
    actor.require(Permission.SEND)
    if not name.strip():
        raise InputError("a campaign needs a name")
    if starts_at < utcnow():
        raise InputError(f"the campaign start {starts_at.isoformat()} is in the past")
    rule = parse_rrule(rrule, starts_at)
    if rule.after(starts_at, inc=True) is None:
        raise InputError(f"RRULE {rrule!r} has no occurrence after {starts_at.isoformat()}")
    if not posts:
        raise InputError("a campaign needs at least one post (--posts ID,ID,...)")
    for post in posts:
        if await session.get(ContentItem, post) is None:
            raise NotFound(f"unknown content {post}")
    parse_quiet_plan(quiet_hours)
    tree = await load_tree(session, starts_at.astimezone(LOCAL_TZ).date())
    for code in scope:
        actor.require_within(tree, tree.get(code).id, "campaign")
    for platform in platforms:
        check_platform(platform)
    if (await session.execute(select(col(Campaign.id)).where(col(Campaign.name) == name))).first():
        raise Conflict(f"campaign {name!r} already exists")
    campaign = Campaign(
        name=name,
        posts=list(posts),
        rrule=rrule.strip(),
        starts_at=starts_at,
        scope=list(scope),
        tiers=list(tiers),
        platforms=list(platforms),
        waves=dict(waves or {}),
        quiet_hours=quiet_hours,
        created_by=actor.id,
    )
    session.add(campaign)
    await session.flush()
    await audit.record(
        session,
        actor.name,
        "campaign.add",
        "campaign",
        campaign.id,
        after={"name": name, "posts": list(posts), "rrule": rrule, "scope": list(scope)},
    )
    return campaign


def next_occurrence(campaign: Campaign, after: datetime) -> datetime | None:
    rule = parse_rrule(campaign.rrule, campaign.starts_at)
    found = rule.after(after.astimezone(LOCAL_TZ), inc=False)
    return found if isinstance(found, datetime) else None


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    """``cns campaigns add|list``: a campaign, its posts (content ids in order), the index of the next
    one, and the next occurrence (local time; None once it is not active)."""

    id: int
    name: str
    status: str
    posts: tuple[int, ...]
    next_post: int
    rrule: str
    scope: tuple[str, ...]
    next_occurrence: datetime | None


async def list_campaigns(session: AsyncSession) -> list[CampaignInfo]:
    out = []
    for c in (await session.execute(select(Campaign).order_by(col(Campaign.id)))).scalars():
        upcoming = next_occurrence(c, c.last_occurrence or c.starts_at.replace(microsecond=0) - _EPSILON)
        if c.status != CampaignStatus.ACTIVE:
            upcoming = None
        out.append(
            CampaignInfo(
                pk(c.id), c.name, c.status, tuple(c.posts), c.next_post, c.rrule, tuple(c.scope), upcoming
            )
        )
    return out


async def run_due(app: App, now: datetime | None = None) -> list[int]:
    """Plan the dispatches whose occurrence has come; returns their ids."""
    moment = now or utcnow()
    planned: list[int] = []
    async with app.transaction() as s:
        campaigns = (
            (await s.execute(select(Campaign).where(col(Campaign.status) == CampaignStatus.ACTIVE)))
            .scalars()
            .all()
        )
    for campaign in campaigns:
        since = campaign.last_occurrence or campaign.starts_at - _EPSILON
        rule = parse_rrule(campaign.rrule, campaign.starts_at)
        due = rule.between(since.astimezone(LOCAL_TZ), moment.astimezone(LOCAL_TZ), inc=True)
        due = [d for d in due if d > since]
        if not due:
            continue
        try:
            dispatch_id = await _occur(app, pk(campaign.id), due[-1], skipped=len(due) - 1)
        except DatabaseUnavailable:
            raise  # not this campaign's fault: the occurrence is planned when the database is back
        except CnsError as exc:  # one broken campaign must not stop the others
            log.warning("campaign %s: %s", campaign.name, exc)
            async with app.transaction() as s:
                s.add(Alert(kind="campaign_failed", message=f"campaign {campaign.name!r}: {exc}"))
                stored = await s.get(Campaign, campaign.id)
                if stored is not None:
                    stored.last_occurrence = due[-1]
            continue
        if dispatch_id is not None:
            planned.append(dispatch_id)
    return planned


async def _occur(app: App, campaign_id: int, occurrence: datetime, skipped: int) -> int | None:
    async with app.transaction() as s:
        campaign = await s.get(Campaign, campaign_id)
        assert campaign is not None
        creator = await s.get(User, campaign.created_by)
        assert creator is not None
        actor = await get_actor(s, creator.name)
        campaign.last_occurrence = occurrence
        if campaign.next_post >= len(campaign.posts):
            campaign.status = CampaignStatus.ENDED
            return None
        post = campaign.posts[campaign.next_post]
        campaign.next_post += 1
        if campaign.next_post >= len(campaign.posts):
            campaign.status = CampaignStatus.ENDED
        quiet = parse_quiet_plan(campaign.quiet_hours)
        result = await planning.plan(
            s,
            actor,
            post,
            campaign.scope,
            tiers=campaign.tiers or None,
            platforms=campaign.platforms or None,
            waves=campaign.waves,
            adjust=quiet.after if quiet else None,
            quiet_hours=quiet.describe() if quiet else "",
            adjust_key=f"quiet {quiet.describe()}|campaign {campaign.id}#{campaign.next_post}"
            if quiet
            else f"campaign {campaign.id}#{campaign.next_post}",
        )
        await audit.record(
            s,
            actor.name,
            "campaign.occurrence",
            "campaign",
            campaign_id,
            after={
                "occurrence": occurrence.isoformat(),
                "post": post,
                "dispatch": result.dispatch_id,
                "missed_occurrences_skipped": skipped,
            },
        )
        return result.dispatch_id


async def loop(app: App, stop: Any, interval: float = 30.0) -> None:
    """Run :func:`run_due` every ``interval`` seconds until ``stop`` (an asyncio.Event) is set."""
    import asyncio
    import contextlib

    while not stop.is_set():
        try:
            await run_due(app)
        except Exception as exc:  # the dispatcher keeps working if the scheduler trips
            if (unavailable := app.unavailable(exc)) is not None:  # one line a tick, not a traceback
                log.warning("scheduler tick skipped: %s", unavailable)
            else:
                log.exception("scheduler tick failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
