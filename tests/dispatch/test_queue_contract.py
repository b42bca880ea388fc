"""One queue contract, three implementations: the in-memory twin, SQLite and PostgreSQL.

Each test runs against a world of 5 deliveries of one dispatch over 4 groups' accounts (the world of
test_dispatcher: two Telegram groups, two Zalo groups, one webhook endpoint; a Facebook account with no
group), read back through the implementation's own storage, never through the queue under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import select, update

from broadcaster.bootstrap import initialise
from broadcaster.dispatch.outcomes import AccountRefused, Decided, GroupGone, GroupMigrated
from broadcaster.dispatch.queue import Queue, SqlQueue
from broadcaster.dispatch.queue_memory import MemoryDelivery, MemoryQueue, MemoryStore
from broadcaster.domain.models import Account, ChatGroup, Delivery, Dispatch
from broadcaster.domain.settings import Settings
from broadcaster.domain.sqltypes import utcnow
from tests.dispatch.test_dispatcher import _world

LEASE = timedelta(seconds=30)
FIELDS = ("state", "attempts", "lease_owner", "next_attempt_at", "last_error", "resent_unknown")


class Harness(Protocol):
    deliveries: list[int]  # in id order
    account_of: dict[int, int]  # delivery -> account
    group_of: dict[int, int]  # delivery -> group
    dispatch_id: int

    def queue(self, worker: str) -> Queue: ...
    async def delivery(self, delivery_id: int) -> dict[str, Any]: ...
    async def sent_at(self, delivery_id: int) -> datetime | None: ...
    async def set_delivery(self, delivery_id: int, **values: Any) -> None: ...
    async def set_dispatch(self, **values: Any) -> None: ...
    async def dispatch_status(self) -> str: ...
    async def set_account(self, account_id: int, status: str) -> None: ...
    async def account_status(self, account_id: int) -> str: ...
    async def group(self, group_id: int) -> tuple[str, str]: ...  # (status, external id)


@dataclass
class MemoryHarness:
    store: MemoryStore
    deliveries: list[int]
    account_of: dict[int, int]
    group_of: dict[int, int]
    dispatch_id: int = 1

    @classmethod
    def build(cls) -> MemoryHarness:
        store = MemoryStore()
        store.dispatches[1] = ("planned", utcnow() - timedelta(seconds=1))
        store.accounts = {1: "active", 2: "active", 3: "active", 4: "active"}
        for group_id, account in zip(range(1, 6), (1, 1, 2, 2, 4), strict=True):
            store.groups[group_id] = (account, "active", f"ext-{group_id}")
            store.deliveries[group_id] = MemoryDelivery(group_id, 1, group_id)
        ids = sorted(store.deliveries)
        return cls(store, ids, {d: store.groups[d][0] for d in ids}, {d: d for d in ids})

    def queue(self, worker: str) -> Queue:
        return MemoryQueue(self.store, worker, LEASE)

    async def delivery(self, delivery_id: int) -> dict[str, Any]:
        d = self.store.deliveries[delivery_id]
        return {f: getattr(d, f) for f in FIELDS} | {"message_ids": list(d.message_ids)}

    async def sent_at(self, delivery_id: int) -> datetime | None:
        return self.store.deliveries[delivery_id].sent_at

    async def set_delivery(self, delivery_id: int, **values: Any) -> None:
        for key, value in values.items():
            setattr(self.store.deliveries[delivery_id], key, value)

    async def set_dispatch(self, **values: Any) -> None:
        status, scheduled = self.store.dispatches[1]
        self.store.dispatches[1] = (values.get("status", status), values.get("scheduled_at", scheduled))

    async def dispatch_status(self) -> str:
        return self.store.dispatches[1][0]

    async def set_account(self, account_id: int, status: str) -> None:
        self.store.accounts[account_id] = status

    async def account_status(self, account_id: int) -> str:
        return self.store.accounts[account_id]

    async def group(self, group_id: int) -> tuple[str, str]:
        _, status, ext = self.store.groups[group_id]
        return status, ext


@dataclass
class SqlHarness:
    app: Any
    deliveries: list[int]
    account_of: dict[int, int]
    group_of: dict[int, int]
    dispatch_id: int

    @classmethod
    async def build(cls, app: Any, tmp_path: Path) -> SqlHarness:
        dispatch_id = await _world(app, tmp_path)
        async with app.transaction() as s:
            rows = (
                await s.execute(
                    select(Delivery.id, Delivery.group_id, ChatGroup.account_id)  # type: ignore[call-overload]
                    .join(ChatGroup, ChatGroup.id == Delivery.group_id)
                    .order_by(Delivery.id)
                )
            ).all()
            await s.execute(
                update(Dispatch).values(scheduled_at=utcnow() - timedelta(seconds=1))  # type: ignore[arg-type]
            )
        return cls(
            app,
            [r[0] for r in rows],
            {r[0]: r[2] for r in rows},
            {r[0]: r[1] for r in rows},
            dispatch_id,
        )

    def queue(self, worker: str) -> Queue:
        return SqlQueue(self.app, worker, LEASE)

    async def delivery(self, delivery_id: int) -> dict[str, Any]:
        async with self.app.transaction() as s:
            d = await s.get(Delivery, delivery_id)
            return {f: getattr(d, f) for f in FIELDS} | {"message_ids": list(d.message_ids or [])}

    async def sent_at(self, delivery_id: int) -> datetime | None:
        async with self.app.transaction() as s:
            return (await s.get(Delivery, delivery_id)).sent_at  # type: ignore[union-attr]

    async def set_delivery(self, delivery_id: int, **values: Any) -> None:
        async with self.app.transaction() as s:
            await s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))  # type: ignore[arg-type]

    async def set_dispatch(self, **values: Any) -> None:
        async with self.app.transaction() as s:
            await s.execute(update(Dispatch).values(**values))

    async def dispatch_status(self) -> str:
        async with self.app.transaction() as s:
            return (await s.get(Dispatch, self.dispatch_id)).status  # type: ignore[union-attr]

    async def set_account(self, account_id: int, status: str) -> None:
        async with self.app.transaction() as s:
            await s.execute(update(Account).where(Account.id == account_id).values(status=status))  # type: ignore[arg-type]

    async def account_status(self, account_id: int) -> str:
        async with self.app.transaction() as s:
            return (await s.get(Account, account_id)).status  # type: ignore[union-attr]

    async def group(self, group_id: int) -> tuple[str, str]:
        async with self.app.transaction() as s:
            g = await s.get(ChatGroup, group_id)
            assert g is not None
            return g.status, g.external_id


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``memory`` or the URL of an empty database (a sync fixture: the PostgreSQL one runs its own loop)."""
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cns.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def world(where: str, tmp_path: Path) -> AsyncIterator[Harness]:
    if where == "memory":
        yield MemoryHarness.build()
        return
    app, _, _ = await initialise(Settings(database_url=where))
    try:
        yield await SqlHarness.build(app, tmp_path)
    finally:
        await app.close()


def _sent(delivery_id: int, attempts: int = 1, ids: tuple[str, ...] = ("m1",)) -> Decided:
    return Decided(delivery_id, "sent", None, None, attempts, ids, sent=True)


async def test_claim_takes_due_rows_oldest_first_under_a_lease_once(world: Harness) -> None:
    now = utcnow()
    queue = world.queue("w1")
    first = await queue.claim(now, 3)
    assert [c.delivery_id for c in first] == world.deliveries[:3]
    assert all(c.attempts == 1 and c.dispatch_id == world.dispatch_id for c in first)
    assert [c.group_id for c in first] == [world.group_of[d] for d in world.deliveries[:3]]
    row = await world.delivery(world.deliveries[0])
    assert (row["state"], row["lease_owner"], row["attempts"]) == ("sending", "w1", 1)
    assert await world.dispatch_status() == "running"
    rest = await queue.claim(now, 10)
    assert [c.delivery_id for c in rest] == world.deliveries[3:]  # nothing is claimed twice
    assert await queue.claim(now, 10) == []


async def test_concurrent_workers_never_claim_the_same_row_and_share_accounts(world: Harness) -> None:
    now = utcnow()
    queues = [world.queue(f"w{i}") for i in range(3)]
    claims = await asyncio.gather(*(q.claim(now, 10) for q in queues))
    ids = [c.delivery_id for claim in claims for c in claim]
    assert sorted(ids) == world.deliveries  # every row, each once
    held = [q.accounts for q in queues]
    assert sum(len(h) for h in held) == len(set().union(*held)) == 4  # an account has one worker
    for q, claim in zip(queues, claims, strict=True):
        assert {world.account_of[c.delivery_id] for c in claim} <= q.accounts


async def test_what_is_not_due_is_not_claimed(world: Harness) -> None:
    now = utcnow()
    first, second, third = world.deliveries[:3]
    await world.set_delivery(first, state="errored", next_attempt_at=now + timedelta(minutes=5))
    await world.set_delivery(second, state="sent")
    await world.set_account(world.account_of[third], "paused")
    got = {c.delivery_id for c in await world.queue("w").claim(now, 10)}
    paused = {d for d in world.deliveries if world.account_of[d] == world.account_of[third]}
    assert got == set(world.deliveries) - {first, second} - paused
    assert (await world.delivery(first))["state"] == "errored"


@pytest.mark.parametrize("status", ["paused", "cancelled", "done"])
async def test_a_dispatch_that_is_not_runnable_is_not_claimed(world: Harness, status: str) -> None:
    await world.set_dispatch(status=status)
    assert await world.queue("w").claim(utcnow(), 10) == []


async def test_a_dispatch_scheduled_later_waits(world: Harness) -> None:
    now = utcnow()
    await world.set_dispatch(scheduled_at=now + timedelta(hours=1))
    queue = world.queue("w")
    assert await queue.claim(now, 10) == []
    assert not await queue.anything_left(now + timedelta(seconds=60))
    assert await queue.anything_left(now + timedelta(hours=2))
    assert len(await queue.claim(now + timedelta(hours=1, seconds=1), 10)) == 5


async def test_commit_writes_outcomes_and_keeps_the_first_send_time(world: Harness) -> None:
    now = utcnow()
    queue = world.queue("w")
    a, b, c = (x.delivery_id for x in await queue.claim(now, 3))
    later = now + timedelta(seconds=90)
    await queue.commit(
        [
            _sent(a, ids=("m1", "m2")),
            Decided(b, "errored", later, "boom", 1),
            Decided(c, "queued", later, "quiet hours", 0),
        ],
        now,
    )
    row_a, row_b, row_c = [await world.delivery(x) for x in (a, b, c)]
    assert (row_a["state"], row_a["message_ids"], row_a["lease_owner"]) == ("sent", ["m1", "m2"], None)
    assert await world.sent_at(a) == now
    assert (row_b["state"], row_b["last_error"], row_b["attempts"]) == ("errored", "boom", 1)
    assert row_b["next_attempt_at"] == later
    assert (row_c["state"], row_c["attempts"], row_c["next_attempt_at"]) == ("queued", 0, later)
    assert await world.sent_at(b) is None
    # a reminder sent again later keeps the first send time
    await world.set_delivery(a, state="queued")
    again = [x.delivery_id for x in await queue.claim(now + timedelta(seconds=1), 1)]
    assert again == [a]
    await queue.commit([_sent(a, 2)], now + timedelta(hours=1))
    assert await world.sent_at(a) == now


async def test_an_outcome_after_the_lease_was_taken_over_is_ignored(world: Harness) -> None:
    now = utcnow()
    dead, alive = world.queue("dead"), world.queue("alive")
    claimed = await dead.claim(now, 10)
    assert len(claimed) == 5
    await dead.commit([], now, start=[c.delivery_id for c in claimed])  # their requests left
    assert await alive.recover(now) == 0  # the leases are still valid
    after = now + LEASE + timedelta(seconds=1)
    assert await alive.recover(after) == 5
    first = await world.delivery(world.deliveries[0])
    assert first["state"] == "unknown" and "lease expired" in first["last_error"]
    resent = await alive.claim(after, 10)
    assert len(resent) == 5 and all(c.attempts == 2 for c in resent)
    assert (await world.delivery(world.deliveries[0]))["resent_unknown"] == 1
    await dead.commit([_sent(world.deliveries[0])], after)  # the dead worker's late outcome
    row = await world.delivery(world.deliveries[0])
    assert (row["state"], row["lease_owner"]) == ("sending", "alive")


async def test_unknown_rows_wait_for_a_person_when_asked(world: Harness) -> None:
    now = utcnow()
    await world.set_delivery(world.deliveries[0], state="unknown")
    got = [c.delivery_id for c in await world.queue("w").claim(now, 10, unknown=False)]
    assert world.deliveries[0] not in got and len(got) == 4


async def test_renew_keeps_a_slow_send_from_being_taken_for_dead(world: Harness) -> None:
    now = utcnow()
    queue = world.queue("w")
    await queue.claim(now, 10)
    await queue.renew(now + LEASE - timedelta(seconds=1))
    assert await world.queue("other").recover(now + LEASE + timedelta(seconds=1)) == 0
    assert await world.queue("other").recover(now + 2 * LEASE) == 5


async def test_release_gives_back_unstarted_rows_and_accounts(world: Harness) -> None:
    now = utcnow()
    queue = world.queue("w")
    await queue.claim(now, 10)
    await queue.release()
    for d in world.deliveries:
        row = await world.delivery(d)
        assert (row["state"], row["attempts"], row["lease_owner"]) == ("queued", 0, None)
    assert queue.accounts == set()
    other = world.queue("other")  # the accounts are free at once, not after the lease
    assert len(await other.hold_accounts(now)) == 4


async def test_give_back_returns_rows_claimed_but_not_being_sent(world: Harness) -> None:
    """A claim committed while its answer was lost (the database went away): the worker gives back
    what it is not sending, keeps the rest and its accounts; another worker's rows are not touched."""
    now = utcnow()
    queue, other = world.queue("w"), world.queue("other")
    claimed = [c.delivery_id for c in await queue.claim(now, 3)]
    assert await queue.give_back(claimed[:1]) == 2
    assert [(await world.delivery(d))["state"] for d in claimed] == ["sending", "queued", "queued"]
    given = await world.delivery(claimed[1])
    assert (given["attempts"], given["lease_owner"], given["resent_unknown"]) == (0, None, 0)
    assert queue.accounts and await queue.give_back(claimed[:1]) == 0
    await other.hold_accounts(now + LEASE + timedelta(seconds=1))
    theirs = await other.claim(now + LEASE + timedelta(seconds=1), 10)
    assert theirs and await queue.give_back([]) == 1  # only our own row, never theirs
    assert [(await world.delivery(c.delivery_id))["lease_owner"] for c in theirs] == ["other"] * len(theirs)


async def test_account_leases_pass_to_another_worker_when_they_expire(world: Harness) -> None:
    now = utcnow()
    first, second = world.queue("first"), world.queue("second")
    assert len(await first.hold_accounts(now)) == 4
    assert await second.hold_accounts(now) == set()
    later = now + LEASE + timedelta(seconds=1)
    assert len(await second.hold_accounts(later)) == 4
    assert await first.hold_accounts(later) == set()


async def test_effects_of_errors_reach_groups_and_accounts(world: Harness) -> None:
    now = utcnow()
    queue = world.queue("w")
    claimed = {c.delivery_id: c for c in await queue.claim(now, 10)}
    gone, moved, refused = world.deliveries[0], world.deliveries[2], world.deliveries[4]
    await queue.commit(
        [
            Decided(gone, "failed", None, "kicked", 1, effect=GroupGone(claimed[gone].group_id, "kicked")),
            Decided(
                moved, "errored", now, "moved", 0, effect=GroupMigrated(claimed[moved].group_id, "new-9")
            ),
            Decided(
                refused,
                "queued",
                None,
                "bad token",
                0,
                effect=AccountRefused(world.account_of[refused], "bad token"),
            ),
        ],
        now,
    )
    assert (await world.group(world.group_of[gone]))[0] == "unreachable"
    assert (await world.group(world.group_of[moved]))[1] == "new-9"
    assert await world.account_status(world.account_of[refused]) == "paused"
    assert (await world.delivery(refused))["state"] == "queued"


async def test_dispatch_is_done_when_nothing_is_left(world: Harness) -> None:
    now = utcnow()
    queue = world.queue("w")
    claimed = await queue.claim(now, 10)
    await queue.finish_dispatches()
    assert await world.dispatch_status() == "running"  # rows in flight
    assert await queue.anything_left(now)
    await queue.commit([_sent(c.delivery_id) for c in claimed[:-1]], now)
    await queue.commit([Decided(claimed[-1].delivery_id, "failed", None, "refused", 1)], now)
    assert not await queue.anything_left(now + timedelta(seconds=60))
    await queue.finish_dispatches()
    assert await world.dispatch_status() == "done"


async def test_only_rows_whose_request_started_become_unknown(world: Harness) -> None:
    """A worker dies with 5 rows claimed, 2 of them started: those 2 may have been sent (``unknown``,
    counted when sent again); the 3 never handed to a sender wait again, their attempt not charged."""
    now = utcnow()
    dead = world.queue("dead")
    claimed = await dead.claim(now, 10)
    started = [c.delivery_id for c in claimed[:2]]
    await dead.commit([], now, start=started)
    after = now + LEASE + timedelta(seconds=1)
    assert await world.queue("alive").recover(after) == 5
    for d in world.deliveries:
        row = await world.delivery(d)
        expected = ("unknown", 1) if d in started else ("queued", 0)
        assert (row["state"], row["attempts"], row["lease_owner"]) == (*expected, None), d
    again = await world.queue("alive").claim(after, 10)
    assert len(again) == 5
    assert sum([(await world.delivery(d))["resent_unknown"] for d in world.deliveries]) == 2


async def test_a_retry_after_a_failure_that_may_have_been_read_is_counted(world: Harness) -> None:
    """A timeout or a connection dropped after sending: the retry may show the message twice, so it is
    counted with the possible duplicates (a definite refusal is not)."""
    now = utcnow()
    queue = world.queue("w")
    first, second = (c.delivery_id for c in await queue.claim(now, 2))
    await queue.commit(
        [
            Decided(first, "errored", now, "timed out", 1, maybe_twice=True),
            Decided(second, "errored", now, "503", 1),
        ],
        now,
    )
    assert [(await world.delivery(d))["resent_unknown"] for d in (first, second)] == [1, 0]
