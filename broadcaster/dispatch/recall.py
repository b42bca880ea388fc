"""Recall: take a dispatch back everywhere it went.

Pending deliveries are skipped (as cancel does). For each delivery already out: where the platform can
delete (Telegram, Facebook, webhook bridges) its messages are deleted; relay groups' admins are told to
remove the post; where the platform cannot delete (Zalo OA group messages) the delivery is still marked
recalled, with a note saying it must be removed by hand. Each outcome is committed as it happens and
the result says what happened where: a partial recall is reported, never hidden. Calls keep to the
platforms' limits and wait out their 429s (``followup.Pacer``); a recall run again on a recalled
dispatch tries only what failed before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.users import Actor
from broadcaster.dispatch.control import _check_scope, _dispatch
from broadcaster.dispatch.followup import Pacer, SenderPool, Tally
from broadcaster.dispatch.targets import target_for
from broadcaster.domain.errors import DeliveryError, NotSupported, WorkflowError
from broadcaster.domain.models import Account, ChatGroup, Delivery, pk
from broadcaster.domain.ports import Sender
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import DELIVERED, PENDING, DeliveryState, DispatchStatus, GroupMode
from broadcaster.storage.app import App
from broadcaster.units.tree import load_tree


@dataclass(frozen=True, slots=True)
class RecallReport:
    """``cns recall``: what happened where (``by_platform``: outcome counts; ``errors``: the first 20)."""

    dispatch: int
    skipped: int
    deleted: int
    admins_told: int
    not_deletable: int
    failed: int
    by_platform: Mapping[str, Mapping[str, int]]
    errors: tuple[str, ...]


@dataclass(slots=True)
class _Progress:
    """The counts of a recall under way."""

    dispatch: int
    skipped: int = 0
    deleted: int = 0
    admins_told: int = 0
    not_deletable: int = 0
    failed: int = 0
    tally: Tally = field(default_factory=Tally)

    def report(self) -> RecallReport:
        return RecallReport(
            self.dispatch,
            self.skipped,
            self.deleted,
            self.admins_told,
            self.not_deletable,
            self.failed,
            self.tally.counts(),
            self.tally.first_errors(),
        )


async def recall(
    app: App,
    actor: Actor,
    dispatch_id: int,
    *,
    senders: Callable[[Account], Sender],
    relay: Callable[[Mapping[str, Sender]], Sender],
) -> RecallReport:
    report = _Progress(dispatch_id)
    async with app.transaction() as s:
        dispatch = await _dispatch(s, dispatch_id)
        await _check_scope(s, actor, dispatch, "recall")
        again = dispatch.status == DispatchStatus.RECALLED
        if not again:
            before, dispatch.status = dispatch.status, DispatchStatus.RECALLED
            now = utcnow()
            result = await s.execute(
                update(Delivery)
                .where(col(Delivery.dispatch_id) == dispatch_id, col(Delivery.state).in_(PENDING))
                .values(
                    state=DeliveryState.SKIPPED,
                    last_error=f"recalled by {actor.name} before sending",
                    updated_at=now,
                )
            )
            report.skipped = int(result.rowcount)  # type: ignore[attr-defined]
        # What reached a group: the posts sent, and the parts of a post that broke off (its delivery was
        # waiting for a retry, now skipped, but its first messages are in the group).
        rows = [
            (delivery, group)
            for delivery, group in (
                await s.execute(
                    select(Delivery, ChatGroup)
                    .join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
                    .where(
                        col(Delivery.dispatch_id) == dispatch_id,
                        col(Delivery.state).in_([*DELIVERED, DeliveryState.SKIPPED]),
                    )
                )
            ).all()
            if delivery.state in DELIVERED or delivery.message_ids
        ]
        if again and not rows:
            raise WorkflowError(f"dispatch {dispatch_id} was already recalled; nothing is left to take back")
        await audit.record(
            s,
            actor.name,
            "dispatch.recall.retry" if again else "dispatch.recall",
            "dispatch",
            dispatch_id,
            None if again else {"status": before},
            {"status": DispatchStatus.RECALLED, "deliveries": len(rows)},
        )
        accounts = {pk(a.id): a for a in (await s.execute(select(Account))).scalars()}
        tree = await load_tree(s, dispatch.as_of)
    pool, pacer = SenderPool(senders), Pacer()
    try:
        for delivery, group in rows:
            account = accounts[group.account_id]
            outcome, note = await _take_back(
                delivery, group, account, accounts, tree, pool, relay, report, pacer
            )
            async with app.transaction() as s:
                await s.execute(
                    update(Delivery)
                    .where(col(Delivery.id) == delivery.id)
                    .values(
                        state=DeliveryState.RECALLED if outcome != "failed" else delivery.state,
                        last_error=note,
                        updated_at=utcnow(),
                    )
                )
    finally:
        await pool.close()
    return report.report()


async def _take_back(
    delivery: Delivery,
    group: ChatGroup,
    account: Account,
    accounts: Mapping[int, Account],
    tree: Any,
    pool: SenderPool,
    relay: Callable[[Mapping[str, Sender]], Sender],
    report: _Progress,
    pacer: Pacer,
) -> tuple[str, str]:
    target = target_for(group, tree)
    ids = tuple(delivery.message_ids)
    try:
        if group.mode == GroupMode.RELAY:
            relayed = relay(pool.channels(accounts))
            await pacer.call(account, pk(group.id), lambda: relayed.delete(target, ids))
            report.admins_told += 1
            report.tally.note(group.platform, "admins told")
            return "told", "recalled: the relay admins were asked to remove the post"
        sender = pool.get(account)
        await pacer.call(account, pk(group.id), lambda: sender.delete(target, ids))
        report.deleted += 1
        report.tally.note(group.platform, "deleted")
        return "deleted", "recalled: deleted on the platform"
    except NotSupported as exc:
        report.not_deletable += 1
        report.tally.note(group.platform, "cannot delete")
        return "marked", f"recalled, NOT deleted: {exc.reason}; remove it by hand"
    except DeliveryError as exc:
        report.failed += 1
        report.tally.fail(group.platform, group.title, exc.reason)
        return "failed", f"recall failed: {exc.reason}"
