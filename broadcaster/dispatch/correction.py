"""Correction: replace a sent post with a newer approved revision of the same content.

Where the platform can edit (Telegram text, Facebook posts, webhook bridges) the message is edited in
place; where it cannot (Zalo OA: ``NotSupported``), or the post went out in several parts, a correction
post is sent that names the original ("Đính chính: <title>"); relay groups' admins get the corrected
text to post again. The new revision must have been approved: a correction is content like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.users import Actor
from broadcaster.dispatch.control import _check_scope, _dispatch
from broadcaster.dispatch.followup import Pacer, SenderPool, Tally
from broadcaster.dispatch.targets import revision_media, target_for
from broadcaster.domain.errors import DeliveryError, NotSupported, WorkflowError
from broadcaster.domain.models import (
    Account,
    ChatGroup,
    ContentItem,
    ContentRevision,
    Delivery,
    pk,
)
from broadcaster.domain.ports import Media, RenderedMessage, Sender
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import DELIVERED, ContentStatus, GroupMode
from broadcaster.storage.app import App
from broadcaster.units.tree import load_tree

RenderFn = Callable[[str, ContentRevision, list[Media], Mapping[str, str]], RenderedMessage]
CORRECTION_PREFIX = "Đính chính: "


@dataclass(frozen=True, slots=True)
class CorrectionReport:
    """``cns correct``: what happened where (``by_platform``: outcome counts; ``errors``: the first 20)."""

    dispatch: int
    revision: int
    edited: int
    correction_posts: int
    admins_told: int
    failed: int
    by_platform: Mapping[str, Mapping[str, int]]
    errors: tuple[str, ...]


@dataclass(slots=True)
class _Progress:
    """The counts of a correction under way."""

    dispatch: int
    revision: int
    edited: int = 0
    correction_posts: int = 0
    admins_told: int = 0
    failed: int = 0
    tally: Tally = field(default_factory=Tally)

    def report(self) -> CorrectionReport:
        return CorrectionReport(
            self.dispatch,
            self.revision,
            self.edited,
            self.correction_posts,
            self.admins_told,
            self.failed,
            self.tally.counts(),
            self.tally.first_errors(),
        )


async def correct(
    app: App,
    actor: Actor,
    dispatch_id: int,
    *,
    senders: Callable[[Account], Sender],
    relay: Callable[[Mapping[str, Sender]], Sender],
    render: RenderFn,
) -> CorrectionReport:
    async with app.transaction() as s:
        dispatch = await _dispatch(s, dispatch_id)
        await _check_scope(s, actor, dispatch, "correct")
        item = await s.get(ContentItem, dispatch.content_id)
        old = await s.get(ContentRevision, dispatch.revision_id)
        assert item is not None
        assert old is not None
        if (
            item.status != ContentStatus.APPROVED
            or item.approved_revision is None
            or item.approved_revision <= old.number
        ):
            raise WorkflowError(
                f"dispatch {dispatch_id} sent revision {old.number}; edit content {item.id} and have the new "
                "revision approved before correcting"
            )
        new = (
            await s.execute(
                select(ContentRevision).where(
                    col(ContentRevision.content_id) == item.id,
                    col(ContentRevision.number) == item.approved_revision,
                )
            )
        ).scalar_one()
        rows = (
            await s.execute(
                select(Delivery, ChatGroup)
                .join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
                .where(col(Delivery.dispatch_id) == dispatch_id, col(Delivery.state).in_(DELIVERED))
            )
        ).all()
        accounts = {pk(a.id): a for a in (await s.execute(select(Account))).scalars()}
        tree = await load_tree(s, dispatch.as_of)
        # The edit carries the new revision's attachments (a post sent as a captioned photo is edited
        # by its caption); when they are the old ones, the platform keeps its media as they are.
        media = await revision_media(s, new.id, app.settings.public_url)
        keep_media = list(old.attachments) == list(new.attachments)
        await audit.record(
            s,
            actor.name,
            "dispatch.correct",
            "dispatch",
            dispatch_id,
            {"revision": old.number},
            {"revision": new.number, "sha256": new.sha256},
        )
    report = _Progress(dispatch_id, new.number)
    notice = ContentRevision(
        content_id=new.content_id,
        number=new.number,
        title=CORRECTION_PREFIX + old.title,
        body=new.body,
        category=new.category,
        links=new.links,
        attachments=[],
        sha256=new.sha256,
        author_id=new.author_id,
    )
    pool, pacer = SenderPool(senders), Pacer()
    try:
        for delivery, group in rows:
            target = target_for(group, tree)
            account = accounts[group.account_id]
            try:
                if group.mode == GroupMode.RELAY:
                    message = render(group.platform, new, [], target.variables)
                    edit = relay(pool.channels(accounts)).edit
                    await pacer.call(
                        account, pk(group.id), partial(edit, target, ",".join(delivery.message_ids), message)
                    )
                    report.admins_told += 1
                    outcome = "corrected: the relay admins got the new text"
                else:
                    message = render(group.platform, new, media, target.variables)
                    outcome = await _edit_or_post(
                        pool.get(account),
                        target,
                        delivery,
                        group,
                        replace(message, keep_media=keep_media),
                        notice,
                        render,
                        report,
                        pacer,
                        account,
                    )
                report.tally.note(group.platform, outcome.split(": ", 1)[1])
            except DeliveryError as exc:
                report.failed += 1
                report.tally.fail(group.platform, group.title, exc.reason)
                outcome = f"correction failed: {exc.reason}"
            async with app.transaction() as s:
                await s.execute(
                    update(Delivery)
                    .where(col(Delivery.id) == delivery.id)
                    .values(last_error=outcome[:500], updated_at=utcnow())
                )
    finally:
        await pool.close()
    return report.report()


async def _edit_or_post(
    sender: Sender,
    target: Any,
    delivery: Delivery,
    group: ChatGroup,
    message: RenderedMessage,
    notice: ContentRevision,
    render: RenderFn,
    report: _Progress,
    pacer: Pacer,
    account: Account,
) -> str:
    group_id = pk(group.id)
    if len(delivery.message_ids) == 1 and len(message.parts) == 1:
        first = delivery.message_ids[0]
        try:
            await pacer.call(account, group_id, lambda: sender.edit(target, first, message))
            report.edited += 1
            return "corrected: edited in place"
        except NotSupported:
            pass
    post = render(group.platform, notice, [], target.variables)
    key = f"correction-{delivery.id}-{notice.number}"
    await pacer.call(account, group_id, lambda: sender.send(target, post, key))
    report.correction_posts += 1
    return "corrected: correction post sent"
