"""Inbound events: store each verified webhook request at once, then turn it into interactions.

Platforms want an answer within seconds (Zalo: 2 s) and redeliver otherwise, so a request is only
verified and stored (:class:`EventStore`, one INSERT per batch of concurrent requests) before it is
answered; :func:`process_pending` reads the stored events afterwards, links each reply or reaction to the
delivery it answers, and updates groups (removed, migrated, a new group to register). An event that
names no group or message we know is kept as ``unmatched`` for an admin to look at; one that fails to
process is kept as ``failed`` with the reason; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.group_check import match_title
from broadcaster.directory.group_events import mark_unreachable, migrate_group, set_status
from broadcaster.domain.errors import CnsError, DatabaseUnavailable
from broadcaster.domain.models import (
    Alert,
    ChatGroup,
    Delivery,
    GroupSuggestion,
    InboundEvent,
    Interaction,
    MemberSnapshot,
    pk,
)
from broadcaster.domain.ports import HookCodec, Signal
from broadcaster.domain.sqltypes import UTCDateTime, utcnow
from broadcaster.domain.states import GroupStatus, InboundEventStatus, SuggestionStatus
from broadcaster.domain.timeutil import today as current_day
from broadcaster.inbound.privacy import pseudonym
from broadcaster.storage.app import App
from broadcaster.storage.db import is_sqlite, upsert_insert

log = logging.getLogger(__name__)

STALE_WORK = timedelta(minutes=5)  # an event working this long belonged to a process that died
CHUNK = 50  # events per transaction when processing
_DELIVERY_KEY = re.compile(r"^delivery-(\d{1,12})$")


@dataclass(slots=True)
class _Pending:
    row: dict[str, Any]
    done: asyncio.Future[None]


@dataclass(slots=True)
class EventStore:
    """Group commit for webhook requests: every request waiting at the same moment is written in one
    transaction, and each is answered only after that commit (so an acknowledged event is durable)."""

    app: App
    max_batch: int = 500
    _queue: list[_Pending] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    stored: int = 0
    batches: int = 0

    async def store(self, account_id: int, platform: str, key: str, body: bytes) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer())
        row = {
            "account_id": account_id,
            "platform": platform,
            "key": key,
            "body": body,
            "status": InboundEventStatus.PENDING,
        }
        pending = _Pending(row, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._wake.set()
        await pending.done

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                try:
                    await self._insert([p.row for p in batch])
                except Exception:
                    # One bad row must not fail the requests written with it: each is tried alone, so
                    # only it (or, with the database down, every one) gets the error (a 503).
                    await self._one_by_one(batch)
                    continue
                self.stored += len(batch)
                self.batches += 1
                for p in batch:
                    if not p.done.done():
                        p.done.set_result(None)

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        for i, p in enumerate(batch):
            try:
                await self._insert([p.row])
            except DatabaseUnavailable as exc:  # not this row's fault: every waiting request gets it
                for waiting in batch[i:]:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                return
            except Exception as exc:
                if not p.done.done():
                    p.done.set_exception(exc)
                continue
            self.stored += 1
            self.batches += 1
            if not p.done.done():
                p.done.set_result(None)

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        now = utcnow()
        for row in rows:
            row["received_at"] = now
        async with self.app.transaction() as s:
            statement = upsert_insert(s)(InboundEvent).on_conflict_do_nothing(
                index_elements=["account_id", "key"]
            )
            await s.execute(statement, rows)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# --- processing --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ProcessStats:
    done: int = 0
    unmatched: int = 0
    ignored: int = 0
    failed: int = 0

    def add(self, status: InboundEventStatus) -> None:
        setattr(self, status, getattr(self, status) + 1)


async def _claim(app: App, limit: int) -> list[InboundEvent]:
    now = utcnow()
    async with app.transaction() as s:
        # Events a dead process was working on go back to the queue.
        await s.execute(
            update(InboundEvent)
            .where(
                col(InboundEvent.status) == InboundEventStatus.WORKING,
                col(InboundEvent.processed_at) < now - STALE_WORK,
            )
            .values(status=InboundEventStatus.PENDING)
        )
        ids = (
            select(col(InboundEvent.id))
            .where(col(InboundEvent.status) == InboundEventStatus.PENDING)
            .order_by(col(InboundEvent.id))
            .limit(limit)
        )
        if not is_sqlite(app.engine):
            ids = ids.with_for_update(skip_locked=True)
        claimed = await s.execute(
            update(InboundEvent)
            .where(col(InboundEvent.id).in_(ids.scalar_subquery()))
            .values(status=InboundEventStatus.WORKING, processed_at=now)
            .returning(InboundEvent)
        )
        return list(claimed.scalars())


async def process_pending(
    app: App, codecs: Mapping[str, HookCodec], *, limit: int = 500, today: Any = None, chunk: int = CHUNK
) -> ProcessStats:
    """Process up to ``limit`` stored events.

    Events go ``chunk`` at a time through one short transaction (per-event transactions cost a commit
    each and capped processing at ~300 events/s). When anything in a chunk fails, the chunk is rolled
    back and its events are done again one per transaction, so one bad event fails alone and no write
    lock is held long (SQLite has one writer at a time)."""
    stats = ProcessStats()
    events = await _claim(app, limit)
    key = app.settings.key_for_pseudonyms()
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        try:
            async with app.transaction() as s:
                marks = [await _process(s, event, codecs, key, today) for event in part]
                await _mark_all(s, marks)
        except Exception:  # anything: the chunk's events are done again one by one just below
            for event in part:
                stats.add(await _process_alone(app, event, codecs, key, today))
            continue
        for mark in marks:
            stats.add(mark["b_status"])
    return stats


async def _process(
    s: AsyncSession, event: InboundEvent, codecs: Mapping[str, HookCodec], key: bytes, today: Any
) -> dict[str, Any]:
    codec = codecs.get(event.platform)
    if codec is None:
        raise CnsError(f"no reader for platform {event.platform}")
    signals = codec.parse(event.body or b"{}")
    users = [g.user_id for g in signals if g.user_id]
    actor = pseudonym(key, event.platform, users[0]) if users else None
    status, note = await _apply_all(s, event, signals, key, today)
    return {"b_id": event.id, "b_status": status, "b_note": note, "b_actor": actor, "b_at": utcnow()}


async def _process_alone(
    app: App, event: InboundEvent, codecs: Mapping[str, HookCodec], key: bytes, today: Any
) -> InboundEventStatus:
    mark: dict[str, Any] = {"b_id": event.id, "b_actor": None, "b_at": utcnow()}
    try:
        async with app.transaction() as s:
            mark = await _process(s, event, codecs, key, today)
            await _mark_all(s, [mark])
        return InboundEventStatus(mark["b_status"])
    except CnsError as exc:
        mark.update(b_status=InboundEventStatus.FAILED, b_note=str(exc)[:500])
    except Exception as exc:  # a bug or a database error: the event is kept, marked, looked at
        log.exception("inbound event %s", event.id)
        mark.update(b_status=InboundEventStatus.FAILED, b_note=f"internal error: {type(exc).__name__}")
    async with app.transaction() as s:
        await _mark_all(s, [mark])
    return InboundEventStatus.FAILED


_EVENTS = InboundEvent.__table__  # type: ignore[attr-defined]
_MARK = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        note=bindparam("b_note"),
        actor_hash=bindparam("b_actor"),
        processed_at=bindparam("b_at", type_=UTCDateTime),
    )
)


async def _mark_all(s: AsyncSession, marks: list[dict[str, Any]]) -> None:
    await s.execute(_MARK, marks)


async def _apply_all(
    s: AsyncSession, event: InboundEvent, signals: list[Signal], key: bytes, today: Any
) -> tuple[InboundEventStatus, str | None]:
    if not signals:
        return InboundEventStatus.IGNORED, None
    outcomes = [await _apply(s, event, signal, key, today) for signal in signals]
    statuses = [o for o, _ in outcomes]
    notes = "; ".join(n for _, n in outcomes if n)[:500] or None
    if InboundEventStatus.DONE in statuses:
        return InboundEventStatus.DONE, notes
    if InboundEventStatus.UNMATCHED in statuses:
        return InboundEventStatus.UNMATCHED, notes
    return InboundEventStatus.IGNORED, notes


async def _group(s: AsyncSession, account_id: int, chat_id: str | None) -> ChatGroup | None:
    if chat_id is None:
        return None
    return (
        await s.execute(
            select(ChatGroup).where(
                col(ChatGroup.account_id) == account_id, col(ChatGroup.external_id) == chat_id
            )
        )
    ).scalar_one_or_none()


async def _delivery(
    s: AsyncSession, event: InboundEvent, signal: Signal, group: ChatGroup | None
) -> Delivery | None:
    if signal.delivery_key:
        match = _DELIVERY_KEY.match(signal.delivery_key)
        if match:
            delivery = await s.get(Delivery, int(match.group(1)))
            if delivery is not None:
                owner = await s.get(ChatGroup, delivery.group_id)
                if owner is not None and owner.account_id == event.account_id:
                    return delivery
    if signal.message_id is None:
        return None
    # message_ids is a short JSON list per delivery; a group has few deliveries, so a text match on the
    # group's (or, for Zalo 1-1 reactions, the account's recent) deliveries is cheap and portable.
    needle = f'%"{signal.message_id}"%'
    query = select(Delivery).where(cast(col(Delivery.message_ids), String).like(needle))
    if group is not None:
        query = query.where(col(Delivery.group_id) == group.id)
    else:
        recent = utcnow() - timedelta(days=60)
        query = query.join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id)).where(
            col(ChatGroup.account_id) == event.account_id, col(Delivery.sent_at) >= recent
        )
    return (await s.execute(query.order_by(col(Delivery.id).desc()).limit(1))).scalar_one_or_none()


async def _apply(  # noqa: PLR0911, PLR0912 - one branch per signal kind
    s: AsyncSession, event: InboundEvent, signal: Signal, key: bytes, today: Any
) -> tuple[InboundEventStatus, str | None]:
    now = utcnow()
    group = await _group(s, event.account_id, signal.chat_id)
    if signal.kind in {"reply", "reaction", "reaction_count", "read"}:
        delivery = await _delivery(s, event, signal, group)
        if delivery is not None and group is None:
            group = await s.get(ChatGroup, delivery.group_id)
        if group is None:
            return InboundEventStatus.UNMATCHED, f"{signal.kind} in an unknown group {signal.chat_id or '?'}"
        count = signal.count
        if signal.kind in {"reaction_count", "read"}:
            if delivery is None:
                return InboundEventStatus.UNMATCHED, f"{signal.kind} for a message we did not send"
            count = signal.count - await _anonymous_total(s, delivery, signal.kind)
            if count == 0:
                return InboundEventStatus.IGNORED, None
        s.add(
            Interaction(
                kind="reaction" if signal.kind == "reaction_count" else signal.kind,
                at=min(signal.at or now, now),
                platform=event.platform,
                account_id=event.account_id,
                group_id=group.id,
                unit_id=group.unit_id,
                delivery_id=delivery.id if delivery else None,
                dispatch_id=delivery.dispatch_id if delivery else None,
                event_id=event.id,
                actor_hash=pseudonym(key, event.platform, signal.user_id) if signal.user_id else None,
                text=signal.text,
                value=("total" if signal.kind == "reaction_count" else signal.value),
                count=count,
                external_id=signal.external_id,
            )
        )
        return InboundEventStatus.DONE, None if delivery else "not linked to a post"
    if signal.kind == "members":
        if group is None:
            return InboundEventStatus.UNMATCHED, f"member count for an unknown group {signal.chat_id}"
        s.add(MemberSnapshot(group_id=pk(group.id), at=now, members=signal.count, source="webhook"))
        return InboundEventStatus.DONE, None
    if signal.kind == "bot_removed":
        if group is None:
            return InboundEventStatus.UNMATCHED, f"removed from an unknown group {signal.chat_id}"
        await mark_unreachable(s, group, "our bot or account was removed from the group", now)
        return InboundEventStatus.DONE, None
    if signal.kind == "migrated":
        if group is None or not signal.value:
            return InboundEventStatus.UNMATCHED, f"migration of an unknown group {signal.chat_id}"
        migrate_group(s, group, signal.value, now)
        return InboundEventStatus.DONE, None
    if signal.kind == "bot_added":
        return await _bot_added(s, event, signal, group, today)
    return InboundEventStatus.IGNORED, None


async def _anonymous_total(s: AsyncSession, delivery: Delivery, kind: str) -> int:
    """What anonymous counters already added for this delivery (a new total is stored as a delta)."""
    conditions = [col(Interaction.delivery_id) == delivery.id, col(Interaction.actor_hash).is_(None)]
    if kind == "reaction_count":  # anonymous totals, not reactions of people we could not identify
        conditions += [col(Interaction.kind) == "reaction", col(Interaction.value) == "total"]
    else:
        conditions.append(col(Interaction.kind) == kind)
    query = select(func.coalesce(func.sum(col(Interaction.count)), 0)).where(*conditions)
    return int((await s.execute(query)).scalar_one())


async def _bot_added(
    s: AsyncSession, event: InboundEvent, signal: Signal, group: ChatGroup | None, today: Any
) -> tuple[InboundEventStatus, str | None]:
    if signal.chat_id is None:
        return InboundEventStatus.IGNORED, None
    if group is not None:
        if group.status == GroupStatus.UNREACHABLE:
            set_status(s, group, GroupStatus.ACTIVE, "the bot was added back", utcnow())
            s.add(Alert(kind="group_rejoined", group_id=group.id, message=f"added back to {group.title!r}"))
            return InboundEventStatus.DONE, None
        return InboundEventStatus.IGNORED, "already registered"
    title = signal.title or ""
    node, how = await match_title(s, title, today or current_day())
    existing = (
        await s.execute(
            select(GroupSuggestion).where(
                col(GroupSuggestion.account_id) == event.account_id,
                col(GroupSuggestion.external_id) == signal.chat_id,
            )
        )
    ).scalar_one_or_none()
    if existing is None:
        s.add(
            GroupSuggestion(
                account_id=event.account_id,
                platform=event.platform,
                external_id=signal.chat_id,
                title=title[:255],
                unit_id=node.id if node else None,
                match=how,
            )
        )
    else:
        existing.title, existing.unit_id, existing.match = title[:255], node.id if node else None, how
        existing.status = SuggestionStatus.PENDING  # added again after a dismissal: news an admin should see
    return InboundEventStatus.DONE, f"suggested registration ({how} match)"
