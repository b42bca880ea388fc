"""The in-memory twin of :class:`broadcaster.dispatch.queue.SqlQueue`, for tests of the worker loop and
of the queue contract itself. Several :class:`MemoryQueue` (workers) share one :class:`MemoryStore`
(the database), so leases and concurrent claims behave as they do on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broadcaster.dispatch.outcomes import (
    AccountRefused,
    AdminsGone,
    Claimed,
    Decided,
    GroupGone,
    GroupMigrated,
)
from broadcaster.dispatch.queue import RUNNABLE
from broadcaster.domain.states import (
    CLAIMABLE_WITHOUT_UNKNOWN,
    PENDING,
    UNFINISHED,
    AccountStatus,
    DeliveryState,
    DispatchStatus,
    GroupStatus,
)


@dataclass(slots=True)
class MemoryDelivery:
    id: int
    dispatch_id: int
    group_id: int
    state: str = DeliveryState.PLANNED
    next_attempt_at: datetime | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    started_at: datetime | None = None
    last_error: str | None = None
    message_ids: tuple[str, ...] = ()
    sent_at: datetime | None = None
    resent_unknown: int = 0
    reminders: int = 0


@dataclass(slots=True)
class MemoryStore:
    """What the queue reads and writes: deliveries, dispatches (status, scheduled time), groups (their
    account, status, external id), accounts (status) and their leases, alerts raised."""

    deliveries: dict[int, MemoryDelivery] = field(default_factory=dict)
    dispatches: dict[int, tuple[str, datetime]] = field(default_factory=dict)
    groups: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # id -> (account, status, ext id)
    accounts: dict[int, str] = field(default_factory=dict)
    account_leases: dict[int, tuple[str, datetime]] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    rates: dict[int, float] = field(default_factory=dict)  # learned account rates
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one writer, as in a database


class MemoryQueue:
    def __init__(self, store: MemoryStore, worker_id: str, lease: timedelta) -> None:
        self.store = store
        self.worker_id = worker_id
        self.lease = lease
        self._accounts: set[int] = set()

    @property
    def accounts(self) -> set[int]:
        return self._accounts

    async def hold_accounts(self, now: datetime) -> set[int]:
        async with self.store.lock:
            for account_id, status in self.store.accounts.items():
                lease = self.store.account_leases.get(account_id)
                if status == AccountStatus.ACTIVE and (
                    lease is None or lease[0] == self.worker_id or lease[1] < now
                ):
                    self.store.account_leases[account_id] = (self.worker_id, now + self.lease)
            self._accounts = {
                a
                for a, (owner, until) in self.store.account_leases.items()
                if owner == self.worker_id and until > now
            }
        return self._accounts

    async def claim(self, now: datetime, limit: int, *, unknown: bool = True) -> list[Claimed]:
        await self.hold_accounts(now)
        states = PENDING if unknown else CLAIMABLE_WITHOUT_UNKNOWN
        claimed: list[Claimed] = []
        async with self.store.lock:
            for d in sorted(self.store.deliveries.values(), key=lambda d: d.id):
                if len(claimed) >= limit:
                    break
                status, scheduled = self.store.dispatches[d.dispatch_id]
                account_id = self.store.groups[d.group_id][0]
                if (
                    d.state in states
                    and (d.next_attempt_at is None or d.next_attempt_at <= now)
                    and status in RUNNABLE
                    and scheduled <= now
                    and self.store.accounts.get(account_id) == AccountStatus.ACTIVE
                    and account_id in self._accounts
                ):
                    d.resent_unknown += d.state == DeliveryState.UNKNOWN
                    d.state, d.lease_owner, d.lease_until = (
                        DeliveryState.SENDING,
                        self.worker_id,
                        now + self.lease,
                    )
                    d.attempts += 1
                    d.started_at = None
                    claimed.append(
                        Claimed(d.id, d.dispatch_id, d.group_id, d.attempts, d.reminders, d.message_ids)
                    )
            for c in claimed:
                status, scheduled = self.store.dispatches[c.dispatch_id]
                if status == DispatchStatus.PLANNED:
                    self.store.dispatches[c.dispatch_id] = (DispatchStatus.RUNNING, scheduled)
        return claimed

    async def renew(self, now: datetime) -> None:
        async with self.store.lock:
            for d in self.store.deliveries.values():
                if d.lease_owner == self.worker_id and d.state == DeliveryState.SENDING:
                    d.lease_until = now + self.lease
            for account_id, (owner, _) in list(self.store.account_leases.items()):
                if owner == self.worker_id:
                    self.store.account_leases[account_id] = (owner, now + self.lease)

    async def commit(self, rows: Sequence[Decided], now: datetime, start: Sequence[int] = ()) -> None:
        async with self.store.lock:
            for delivery_id in start:
                d = self.store.deliveries[delivery_id]
                if d.lease_owner == self.worker_id:
                    d.started_at = now
            for r in rows:
                if r.effect is not None:
                    self._apply(r, now)
                d = self.store.deliveries[r.delivery_id]
                if d.lease_owner != self.worker_id:
                    continue  # taken over after our lease ran out: the other worker's outcome counts
                d.state, d.next_attempt_at, d.last_error = r.state, r.next_attempt_at, r.error
                d.attempts, d.message_ids = r.attempts, r.message_ids
                if r.sent and d.sent_at is None:
                    d.sent_at = now
                d.resent_unknown += r.maybe_twice
                d.lease_owner = d.lease_until = None

    def _apply(self, r: Decided, now: datetime) -> None:
        effect = r.effect
        if isinstance(effect, GroupGone):
            account, status, ext = self.store.groups[effect.group_id]
            if status == GroupStatus.ACTIVE:
                self.store.groups[effect.group_id] = (account, GroupStatus.UNREACHABLE, ext)
                self.store.alerts.append(f"group_unreachable {effect.group_id}")
                for d in self.store.deliveries.values():
                    if d.group_id == effect.group_id and d.state in PENDING:
                        d.state, d.last_error = DeliveryState.SKIPPED, "group unreachable"
        elif isinstance(effect, GroupMigrated):
            account, status, ext = self.store.groups[effect.group_id]
            if ext != effect.new_id:
                self.store.groups[effect.group_id] = (account, status, effect.new_id)
                self.store.alerts.append(f"group_migrated {effect.group_id}")
        elif isinstance(effect, AdminsGone):
            self.store.alerts.extend(
                f"relay_admin_unreachable {effect.group_id} {key}" for key in effect.admins
            )
        elif (
            isinstance(effect, AccountRefused)
            and self.store.accounts.get(effect.account_id) == AccountStatus.ACTIVE
        ):
            self.store.accounts[effect.account_id] = AccountStatus.PAUSED
            self.store.alerts.append(f"account_paused {effect.account_id}")

    async def release(self) -> None:
        async with self.store.lock:
            for d in self.store.deliveries.values():
                if d.lease_owner == self.worker_id and d.state == DeliveryState.SENDING:
                    d.state, d.lease_owner, d.lease_until = DeliveryState.QUEUED, None, None
                    d.attempts -= 1
            for account_id, (owner, _) in list(self.store.account_leases.items()):
                if owner == self.worker_id:
                    del self.store.account_leases[account_id]
        self._accounts = set()

    async def give_back(self, keep: Collection[int]) -> int:
        count = 0
        async with self.store.lock:
            for d in self.store.deliveries.values():
                if d.lease_owner == self.worker_id and d.state == DeliveryState.SENDING and d.id not in keep:
                    d.state, d.lease_owner, d.lease_until = DeliveryState.QUEUED, None, None
                    d.attempts -= 1
                    count += 1
        return count

    async def recover(self, now: datetime) -> int:
        count = 0
        async with self.store.lock:
            for d in self.store.deliveries.values():
                if d.state == DeliveryState.SENDING and d.lease_until is not None and d.lease_until < now:
                    if d.started_at is not None:  # maybe sent
                        d.state, d.last_error = (
                            DeliveryState.UNKNOWN,
                            "lease expired during the send: outcome unknown",
                        )
                    else:
                        d.state, d.last_error = (
                            DeliveryState.QUEUED,
                            "claimed by a worker that stopped before sending it",
                        )
                        d.attempts -= 1
                    d.lease_owner = d.lease_until = None
                    count += 1
        return count

    async def learned_rates(self) -> dict[int, float]:
        return dict(self.store.rates)

    async def remember_rates(self, rates: Mapping[int, float | None], now: datetime) -> None:
        for account_id, rate in rates.items():
            if rate is None:
                self.store.rates.pop(account_id, None)
            else:
                self.store.rates[account_id] = rate

    async def finish_dispatches(self) -> None:
        async with self.store.lock:
            busy = {d.dispatch_id for d in self.store.deliveries.values() if d.state in UNFINISHED}
            for dispatch_id, (status, scheduled) in self.store.dispatches.items():
                if status == DispatchStatus.RUNNING and dispatch_id not in busy:
                    self.store.dispatches[dispatch_id] = (DispatchStatus.DONE, scheduled)

    async def anything_left(self, soon: datetime) -> bool:
        for d in self.store.deliveries.values():
            if d.state == DeliveryState.SENDING:
                return True
            status, scheduled = self.store.dispatches[d.dispatch_id]
            account = self.store.groups[d.group_id][0]
            if (
                d.state in PENDING
                and status in RUNNABLE
                and self.store.accounts.get(account) == AccountStatus.ACTIVE
                and scheduled <= soon
                and (d.next_attempt_at is None or d.next_attempt_at <= soon)
            ):
                return True
        return False
