"""The delivery queue: where deliveries wait, are claimed under a lease, and get their outcome.

:class:`Queue` is the contract the worker loop relies on; :class:`SqlQueue` keeps it in the database,
with the SQLite and PostgreSQL statements in this one module, and ``queue_memory.MemoryQueue`` is its
in-memory twin. One contract suite (tests/dispatch/test_queue_contract.py) runs against all three.

Each claimed delivery is marked ``sending`` with a lease (owner, expiry) in the claiming transaction,
before any request leaves; its outcome is committed after, and only while the lease is still ours. A
worker that dies leaves rows in ``sending`` whose lease runs out; :meth:`Queue.recover` turns them into
``unknown``. One worker sends for an account at a time (an account lease), so that account's token
bucket is the only one pacing it.

Claiming uses ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` everywhere (SQLite ignores
``FOR UPDATE``), with ``FOR UPDATE SKIP LOCKED`` in the sub-select on PostgreSQL so concurrent workers
never claim the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, cast

from sqlalchemy import and_, bindparam, case, delete, exists, or_, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.group_events import mark_unreachable, migrate_group
from broadcaster.dispatch.outcomes import (
    AccountRefused,
    AdminsGone,
    Claimed,
    Decided,
    Effect,
    GroupGone,
    GroupMigrated,
)
from broadcaster.domain.models import (
    Account,
    AccountLease,
    AccountRate,
    Alert,
    ChatGroup,
    Delivery,
    Dispatch,
    pk,
)
from broadcaster.domain.ports import ADMIN_UNREACHABLE
from broadcaster.domain.sqltypes import UTCDateTime
from broadcaster.domain.states import (
    CLAIMABLE_WITHOUT_UNKNOWN,
    DISPATCH_SENDING,
    PENDING,
    UNFINISHED,
    AccountStatus,
    DeliveryState,
    DispatchStatus,
)
from broadcaster.storage.app import App
from broadcaster.storage.db import upsert_insert

RUNNABLE = DISPATCH_SENDING  # dispatch statuses whose deliveries may be sent


class Queue(Protocol):
    """Claim, renew, commit, release: what the worker loop needs of wherever deliveries wait."""

    worker_id: str
    lease: timedelta

    @property
    def accounts(self) -> set[int]:
        """The accounts this worker holds the lease of (it sends only for those)."""
        ...

    async def hold_accounts(self, now: datetime) -> set[int]:
        """Take (or keep) the lease of every active account no other live worker holds."""
        ...

    async def claim(self, now: datetime, limit: int, *, unknown: bool = True) -> list[Claimed]:
        """Mark up to ``limit`` due deliveries of our accounts ``sending`` under our lease, oldest
        first; ``unknown`` ones too unless ``unknown`` is False (they are counted as possible
        duplicates). Dispatches with a claimed delivery become ``running``."""
        ...

    async def renew(self, now: datetime) -> None:
        """Extend our leases (deliveries being sent, accounts held) to ``now + lease``."""
        ...

    async def commit(self, rows: Sequence[Decided], now: datetime, start: Sequence[int] = ()) -> None:
        """Write each outcome (and its effect on the group or account) in one transaction; a row whose
        lease is no longer ours is left alone. ``start``: claimed rows whose requests are about to leave,
        marked in the same transaction (so a crash counts only them as possibly sent)."""
        ...

    async def release(self) -> None:
        """Give back what we claimed and did not finish (``queued``, the attempt not charged), and our
        account leases."""
        ...

    async def give_back(self, keep: Collection[int]) -> int:
        """Give back, as :meth:`release` does, the rows under our lease other than ``keep`` (those we
        are sending): a claim the database committed but whose answer was lost with the connection.
        Account leases stay. Returns how many."""
        ...

    async def recover(self, now: datetime) -> int:
        """Rows whose lease ran out (their worker died): ``unknown`` when their request had started (maybe
        sent), back to ``queued`` when it had not (the attempt not charged); how many in all."""
        ...

    async def finish_dispatches(self) -> None:
        """Running dispatches with nothing left to send become ``done``."""
        ...

    async def learned_rates(self) -> dict[int, float]:
        """The pace each account's platform really allowed, as learned from its 429s (per second)."""
        ...

    async def remember_rates(self, rates: Mapping[int, float | None], now: datetime) -> None:
        """Keep learned rates (None: back at the configured rate, nothing to remember)."""
        ...

    async def anything_left(self, soon: datetime) -> bool:
        """Deliveries in flight, or due by ``soon`` without anyone's action."""
        ...


def _stored_time(dialect: Dialect) -> Callable[[datetime | None], str | None]:
    """A timestamp as the dialect keeps it, for a value inside the JSON parameter: SQLite compares the
    stored text, so it must be the very text SQLAlchemy writes; PostgreSQL parses ISO 8601."""
    if dialect.name == "postgresql":
        return lambda value: value.isoformat() if value is not None else None
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return lambda value: cast("str | None", process(value))


_T = Delivery.__table__  # type: ignore[attr-defined]
# Every outcome of a flush in one statement with one parameter, the outcomes as a JSON array unpacked
# by the database: an executemany of the same UPDATE spent ~20 us per row in Python binding ten
# parameters (and three timestamps, one JSON list) that the database now reads in C.
# ``sent_at`` keeps the first send's time: a relay reminder goes out again but the post was sent back
# then (escalation counts from it, reports date it by it). A row whose lease was taken over is left alone.
_OUTCOMES_SQL = {
    "sqlite": """
UPDATE delivery SET
    state = json_extract(r.value, '$.state'),
    next_attempt_at = json_extract(r.value, '$.next'),
    last_error = json_extract(r.value, '$.error'),
    attempts = json_extract(r.value, '$.attempts'),
    message_ids = json_extract(r.value, '$.ids'),
    sent_at = coalesce(delivery.sent_at, CASE WHEN json_extract(r.value, '$.sent') THEN :now END),
    external_message_id = json_extract(r.value, '$.external'),
    resent_unknown = delivery.resent_unknown + json_extract(r.value, '$.twice'),
    lease_owner = NULL, lease_until = NULL, updated_at = :now
FROM json_each(:rows) AS r
WHERE delivery.id = json_extract(r.value, '$.id') AND delivery.lease_owner = :owner""",
    "postgresql": """
UPDATE delivery SET
    state = r.state, next_attempt_at = r.next, last_error = r.error, attempts = r.attempts,
    message_ids = r.ids,
    sent_at = coalesce(delivery.sent_at, CASE WHEN r.sent THEN CAST(:now AS timestamptz) END),
    external_message_id = r.external,
    resent_unknown = delivery.resent_unknown + r.twice,
    lease_owner = NULL, lease_until = NULL, updated_at = :now
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    id integer, state text, next timestamptz, error text, attempts integer, ids json, sent boolean,
    external text, twice integer)
WHERE delivery.id = r.id AND delivery.lease_owner = :owner""",
}
_OUTCOMES = {
    name: text(sql).bindparams(bindparam("now", type_=UTCDateTime), bindparam("owner"), bindparam("rows"))
    for name, sql in _OUTCOMES_SQL.items()
}


class SqlQueue:
    """The queue in the ``delivery`` table (SQLite or PostgreSQL)."""

    def __init__(self, app: App, worker_id: str, lease: timedelta) -> None:
        self.app = app
        self.worker_id = worker_id
        self.lease = lease
        self._accounts: set[int] = set()
        self._accounts_at = -1e9
        # One writing transaction at a time per worker: SQLite has a single writer, and a transaction
        # that read before writing fails at once (SQLITE_BUSY) instead of waiting when another
        # connection of ours wrote in between. Between processes the busy timeout does the waiting.
        self._writing = asyncio.Lock()

    @property
    def accounts(self) -> set[int]:
        return self._accounts

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        async with self._writing, self.app.transaction() as session:
            yield session

    async def hold_accounts(self, now: datetime) -> set[int]:
        until = now + self.lease
        async with self._write() as s:
            insert_fn = upsert_insert(s)
            ids = (
                (await s.execute(select(col(Account.id)).where(col(Account.status) == AccountStatus.ACTIVE)))
                .scalars()
                .all()
            )
            for account_id in ids:
                stmt = insert_fn(AccountLease).values(
                    account_id=account_id, owner=self.worker_id, until=until
                )
                await s.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["account_id"],
                        set_={"owner": self.worker_id, "until": until},
                        where=(col(AccountLease.until) < now) | (col(AccountLease.owner) == self.worker_id),
                    )
                )
            held = await s.execute(
                select(col(AccountLease.account_id)).where(
                    col(AccountLease.owner) == self.worker_id, col(AccountLease.until) > now
                )
            )
            self._accounts = set(held.scalars().all())
        self._accounts_at = asyncio.get_running_loop().time()
        return self._accounts

    async def claim(self, now: datetime, limit: int, *, unknown: bool = True) -> list[Claimed]:
        # Account leases are renewed with the deliveries' (renew); looking for accounts freed by a dead
        # worker a few times per lease is enough.
        if asyncio.get_running_loop().time() - self._accounts_at > self.lease.total_seconds() / 4:
            await self.hold_accounts(now)
        if not self._accounts:
            return []
        states = list(PENDING if unknown else CLAIMABLE_WITHOUT_UNKNOWN)
        due = (
            select(col(Delivery.id))
            .join(Dispatch, col(Dispatch.id) == col(Delivery.dispatch_id))
            .join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
            .join(Account, col(Account.id) == col(ChatGroup.account_id))
            .where(
                col(Delivery.state).in_(states),
                or_(col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= now),
                col(Dispatch.status).in_(RUNNABLE),
                col(Dispatch.scheduled_at) <= now,
                col(Account.status) == AccountStatus.ACTIVE,
                col(Account.id).in_(self._accounts),
            )
            .order_by(col(Delivery.id))
            .limit(limit)
        )
        async with self._write() as s:
            if s.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True, of=Delivery)
            # The table on the connection, not the model through the session: an ORM UPDATE ..
            # RETURNING also synchronises the session, which cost as much as the statement for
            # nothing (this session holds no deliveries).
            rows = (
                await (await s.connection()).execute(
                    update(_T)
                    .where(_T.c.id.in_(due.scalar_subquery()))
                    .values(
                        state=DeliveryState.SENDING,
                        lease_owner=self.worker_id,
                        lease_until=now + self.lease,
                        started_at=None,
                        attempts=_T.c.attempts + 1,
                        updated_at=now,
                        resent_unknown=_T.c.resent_unknown
                        + case((_T.c.state == DeliveryState.UNKNOWN, 1), else_=0),
                    )
                    .returning(
                        _T.c.id,
                        _T.c.dispatch_id,
                        _T.c.group_id,
                        _T.c.attempts,
                        _T.c.reminders,
                        _T.c.message_ids,
                    )
                )
            ).all()
            claimed = [
                Claimed(pk(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), tuple(r[5] or ())) for r in rows
            ]
            if claimed:
                await s.execute(
                    update(Dispatch)
                    .where(
                        col(Dispatch.id).in_({c[1] for c in claimed}),
                        col(Dispatch.status) == DispatchStatus.PLANNED,
                    )
                    .values(status=DispatchStatus.RUNNING)
                )
        return sorted(claimed)

    async def renew(self, now: datetime) -> None:
        until = now + self.lease
        async with self._write() as s:
            await s.execute(
                update(Delivery)
                .where(
                    col(Delivery.lease_owner) == self.worker_id, col(Delivery.state) == DeliveryState.SENDING
                )
                .values(lease_until=until)
            )
            await s.execute(
                update(AccountLease).where(col(AccountLease.owner) == self.worker_id).values(until=until)
            )

    async def commit(self, rows: Sequence[Decided], now: datetime, start: Sequence[int] = ()) -> None:
        # Commits are serialised (one writer), so each statement here limits the whole worker's rate: one
        # UPDATE for every row (a per-row ORM update cost ~1.5 ms), one for the rows starting, effects of
        # errors aside.
        if not rows and not start:
            return
        async with self._write() as s:
            if start:
                await (await s.connection()).execute(
                    update(_T)
                    .where(_T.c.id.in_(start), _T.c.lease_owner == self.worker_id)
                    .values(started_at=now)
                )
            if not rows:
                return
            dialect = s.get_bind().dialect
            stored = _stored_time(dialect)
            data = []
            for r in rows:
                if r.effect is not None:
                    await self._apply(s, r.effect, now)
                data.append(
                    {
                        "id": r.delivery_id,
                        "state": r.state,
                        "next": stored(r.next_attempt_at),
                        "error": r.error,
                        "attempts": r.attempts,
                        "ids": list(r.message_ids),
                        "sent": r.sent,
                        "external": r.external_message_id,
                        "twice": int(r.maybe_twice),  # counted with the possible duplicates
                    }
                )
            await (await s.connection()).execute(
                _OUTCOMES[dialect.name],
                {"now": now, "owner": self.worker_id, "rows": json.dumps(data, ensure_ascii=False)},
            )

    @staticmethod
    async def _apply(s: AsyncSession, effect: Effect, now: datetime) -> None:
        if isinstance(effect, GroupGone):
            group = await s.get(ChatGroup, effect.group_id)
            if group is not None:
                await mark_unreachable(s, group, effect.reason, now)
        elif isinstance(effect, GroupMigrated):
            group = await s.get(ChatGroup, effect.group_id)
            if group is not None:
                migrate_group(s, group, effect.new_id, now)
        elif isinstance(effect, AdminsGone):
            group = await s.get(ChatGroup, effect.group_id)
            if group is not None:
                await _admins_gone(s, group, effect.admins, now)
        elif isinstance(effect, AccountRefused):
            account = await s.get(Account, effect.account_id)
            if account is not None and account.status == AccountStatus.ACTIVE:
                account.status, account.paused_reason = AccountStatus.PAUSED, effect.reason[:500]
                s.add(
                    Alert(
                        kind="account_paused",
                        account_id=effect.account_id,
                        message=f"account {account.name} paused: {effect.reason}; its deliveries are held",
                    )
                )

    async def release(self) -> None:
        async with self._write() as s:
            await s.execute(
                update(Delivery)
                .where(
                    col(Delivery.lease_owner) == self.worker_id, col(Delivery.state) == DeliveryState.SENDING
                )
                .values(
                    state=DeliveryState.QUEUED,
                    lease_owner=None,
                    lease_until=None,
                    attempts=col(Delivery.attempts) - 1,
                )
            )
            await s.execute(delete(AccountLease).where(col(AccountLease.owner) == self.worker_id))
        self._accounts.clear()
        self._accounts_at = -1e9

    async def give_back(self, keep: Collection[int]) -> int:
        mine = [col(Delivery.lease_owner) == self.worker_id, col(Delivery.state) == DeliveryState.SENDING]
        if keep:
            mine.append(col(Delivery.id).not_in(list(keep)))
        async with self._write() as s:
            result = await s.execute(
                update(Delivery)
                .where(*mine)
                .values(
                    state=DeliveryState.QUEUED,
                    lease_owner=None,
                    lease_until=None,
                    attempts=col(Delivery.attempts) - 1,
                )
            )
        return int(max(result.rowcount, 0))  # type: ignore[attr-defined]

    async def recover(self, now: datetime) -> int:
        expired = (col(Delivery.state) == DeliveryState.SENDING, col(Delivery.lease_until) < now)
        async with self._write() as s:
            maybe_sent = await s.execute(
                update(Delivery)
                .where(*expired, col(Delivery.started_at).is_not(None))
                .values(
                    state=DeliveryState.UNKNOWN,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                    last_error="lease expired during the send: outcome unknown",
                )
            )
            never_started = await s.execute(
                update(Delivery)
                .where(*expired, col(Delivery.started_at).is_(None))
                .values(
                    state=DeliveryState.QUEUED,
                    lease_owner=None,
                    lease_until=None,
                    attempts=col(Delivery.attempts) - 1,
                    updated_at=now,
                    last_error="claimed by a worker that stopped before sending it",
                )
            )
        return int(max(maybe_sent.rowcount, 0)) + int(max(never_started.rowcount, 0))  # type: ignore[attr-defined]

    async def learned_rates(self) -> dict[int, float]:
        async with self.app.transaction() as s:
            rows = await s.execute(select(col(AccountRate.account_id), col(AccountRate.rate)))
            return {int(a): float(r) for a, r in rows.all()}

    async def remember_rates(self, rates: Mapping[int, float | None], now: datetime) -> None:
        async with self._write() as s:
            for account_id, rate in rates.items():
                if rate is None:
                    await s.execute(delete(AccountRate).where(col(AccountRate.account_id) == account_id))
                    continue
                stmt = upsert_insert(s)(AccountRate).values(account_id=account_id, rate=rate, updated_at=now)
                await s.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["account_id"], set_={"rate": rate, "updated_at": now}
                    )
                )

    async def finish_dispatches(self) -> None:
        # Once per batch, not per commit: the check reads every row of a running dispatch.
        pending = exists().where(
            col(Delivery.dispatch_id) == col(Dispatch.id), col(Delivery.state).in_(UNFINISHED)
        )
        async with self._write() as s:
            await s.execute(
                update(Dispatch)
                .where(col(Dispatch.status) == DispatchStatus.RUNNING, ~pending)
                .values(status=DispatchStatus.DONE)
            )

    async def anything_left(self, soon: datetime) -> bool:
        # Paused accounts and dispatches wait for a person; a dispatch scheduled for tomorrow does not
        # keep ``--until-idle`` running.
        async with self.app.transaction() as s:
            row = await s.execute(
                select(col(Delivery.id))
                .join(Dispatch, col(Dispatch.id) == col(Delivery.dispatch_id))
                .join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
                .join(Account, col(Account.id) == col(ChatGroup.account_id))
                .where(
                    or_(
                        and_(
                            col(Delivery.state).in_(PENDING),
                            col(Dispatch.status).in_(RUNNABLE),
                            col(Account.status) == AccountStatus.ACTIVE,
                            col(Dispatch.scheduled_at) <= soon,
                            or_(
                                col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= soon
                            ),
                        ),
                        col(Delivery.state) == DeliveryState.SENDING,
                    )
                )
                .limit(1)
            )
            return row.first() is not None


async def _admins_gone(s: AsyncSession, group: ChatGroup, keys: Collection[str], now: datetime) -> None:
    """Relay admins their channel says are gone: marked so, one alert each; the group becomes
    unreachable only when no admin is left to reach."""
    admins = [dict(a) for a in group.admins]
    for admin in admins:
        key = f"{admin.get('channel')}:{admin.get('address')}"
        if key in keys and admin.get("status") != ADMIN_UNREACHABLE:
            admin["status"] = ADMIN_UNREACHABLE
            s.add(
                Alert(
                    kind="relay_admin_unreachable",
                    group_id=group.id,
                    message=f"relay admin {admin.get('name')} ({admin.get('channel')}) of group "
                    f"{group.title!r} cannot be reached; the other admins still get the posts",
                )
            )
    if admins != list(group.admins):
        group.admins, group.updated_at = admins, now
        if all(a.get("status") == ADMIN_UNREACHABLE for a in admins):
            await mark_unreachable(s, group, "no relay admin can be reached", now)
