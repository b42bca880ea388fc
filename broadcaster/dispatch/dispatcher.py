"""The outbox dispatcher: claim due deliveries, send them through the adapters, commit the outcome.

Each delivery is marked ``sending`` with a lease (owner, expiry) in the claiming transaction, before any
request leaves; its outcome is committed after. A worker that dies leaves rows in ``sending`` whose lease
runs out; any worker then turns them into ``unknown`` and, under the default policy, sends them again
(``resent_unknown`` counts these possible duplicates; policy ``hold`` leaves them for a person). Leases of
rows still waiting for a rate-limit token are renewed, so a slow, rate-limited broadcast is never taken
for a dead one. What to do after an error is decided by
:class:`broadcaster.dispatch.retry.RetryPolicy` from the error's type alone.

Claiming uses ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` everywhere, with ``FOR UPDATE
SKIP LOCKED`` in the sub-select on PostgreSQL so concurrent workers never claim the same row.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import and_, bindparam, case, delete, exists, or_, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory.group_events import PENDING, mark_unreachable, migrate_group
from broadcaster.dispatch.ratelimit import Limits, is_held
from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.dispatch.targets import GroupView, media_from, target_for, variables_for
from broadcaster.domain.errors import (
    AuthFailed,
    CnsError,
    ConfigError,
    DeliveryError,
    PermanentError,
    RateLimited,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.models import (
    Account,
    AccountLease,
    Alert,
    Attachment,
    ChatGroup,
    ContentRevision,
    Delivery,
    Dispatch,
    RevisionAttachment,
    pk,
)
from broadcaster.domain.ports import Media, RenderedMessage, Sender, SendResult, Target
from broadcaster.domain.sqltypes import UTCDateTime, utcnow
from broadcaster.domain.timeutil import LOCAL_TZ
from broadcaster.storage.app import App
from broadcaster.storage.db import upsert_insert
from broadcaster.units.tree import UnitTree, load_tree

log = logging.getLogger("cns.dispatcher")

FINAL = ("sent", "failed", "skipped", "recalled", "awaiting_confirmation", "confirmed")
_T = Delivery.__table__  # type: ignore[attr-defined]
_G = ChatGroup.__table__  # type: ignore[attr-defined]
# What a send reads of a group (the fields of GroupView), not its timestamps and notes.
_GROUP_FIELDS = (
    "id",
    "account_id",
    "unit_id",
    "platform",
    "external_id",
    "title",
    "mode",
    "status",
    "admins",
)
_GROUP_COLUMNS = tuple(_G.c[name] for name in _GROUP_FIELDS)
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
    lease_owner = NULL, lease_until = NULL, updated_at = :now
FROM json_each(:rows) AS r
WHERE delivery.id = json_extract(r.value, '$.id') AND delivery.lease_owner = :owner""",
    "postgresql": """
UPDATE delivery SET
    state = r.state, next_attempt_at = r.next, last_error = r.error, attempts = r.attempts,
    message_ids = r.ids,
    sent_at = coalesce(delivery.sent_at, CASE WHEN r.sent THEN CAST(:now AS timestamptz) END),
    external_message_id = r.external,
    lease_owner = NULL, lease_until = NULL, updated_at = :now
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    id integer, state text, next timestamptz, error text, attempts integer, ids json, sent boolean,
    external text)
WHERE delivery.id = r.id AND delivery.lease_owner = :owner""",
}
_OUTCOMES = {
    name: text(sql).bindparams(bindparam("now", type_=UTCDateTime), bindparam("owner"), bindparam("rows"))
    for name, sql in _OUTCOMES_SQL.items()
}


def _stored_time(dialect: Dialect) -> Callable[[datetime | None], str | None]:
    """A timestamp as the dialect keeps it, for a value inside the JSON parameter: SQLite compares the
    stored text, so it must be the very text SQLAlchemy writes; PostgreSQL parses ISO 8601."""
    if dialect.name == "postgresql":
        return lambda value: value.isoformat() if value is not None else None
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return lambda value: cast("str | None", process(value))


class RenderFn(Protocol):
    def __call__(
        self,
        platform: str,
        revision: ContentRevision,
        media: Sequence[Media],
        variables: Mapping[str, str],
        limit: int | None = None,
        track: Callable[[str], str] | None = None,
    ) -> RenderedMessage: ...


TrackFn = Callable[[int], Callable[[str], str]]  # delivery id -> (url -> its tracked link)
# (the dispatch's quiet hours, the group's tier, now) -> when sending may resume, or None if not quiet now
QuietFn = Callable[[str, str, datetime], datetime | None]
SenderFactory = Callable[[Account], Sender]
RelayFactory = Callable[[Mapping[str, Sender]], Sender]


@dataclass(slots=True)
class Outcome:
    """What became of one claimed delivery: sent (``message_ids``), an error to decide on, or a state
    reached without a send (``skipped`` for an inactive group, ``queued`` for a paused account)."""

    delivery_id: int
    group_id: int
    account_id: int
    state: str = "sent"
    message_ids: tuple[str, ...] = ()
    error: DeliveryError | None = None
    note: str | None = None
    attempts: int = 1  # counting this one, as the claim set it
    due: datetime | None = None  # held back (quiet hours): due again then


class Claimed(NamedTuple):
    delivery_id: int
    dispatch_id: int
    group_id: int
    attempts: int  # counting the attempt this claim starts
    reminders: int = 0  # relay: reminders asked for by upkeep (the package goes out again, as a reminder)


@dataclass(slots=True)
class _Context:
    revision: ContentRevision
    media: list[Media]
    tree: UnitTree
    quiet_hours: str = ""  # the dispatch's quiet hours per tier, as planned
    variables: dict[int, dict[str, str]] = field(default_factory=dict)  # per unit, computed once


@dataclass(slots=True)
class Stats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    recovered: int = 0
    held: int = 0  # given back by our own rate limit, to be sent when the bucket has room
    errors: dict[str, int] = field(default_factory=dict)  # platform and network errors, by class


class _Slots:
    """A counting semaphore for many waiters, first come first served, each hand-over O(1).

    ``asyncio.Semaphore`` on Python 3.11 scans its waiters on every release and removes each woken
    one from the middle of a deque: with two overlapping batches (twice as many send workers as
    slots, half of them waiting) that cost ~27 future checks per delivery."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just before the cancellation: pass it on
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter stays in the queue until reached here
                waiter.set_result(None)
                return
        self._free += 1


class Dispatcher:
    def __init__(
        self,
        app: App,
        *,
        senders: SenderFactory,
        render: RenderFn,
        relay: RelayFactory | None = None,
        worker_id: str | None = None,
        batch: int = 200,
        concurrency: int = 64,
        lease_seconds: float = 60.0,
        policy: RetryPolicy | None = None,
        unknown_policy: str = "resend",
        max_rate_wait: float = 5.0,
        pipelines: int = 2,
        max_commit: int = 500,
        public_url: str | None = None,
        track: TrackFn | None = None,
        quiet: QuietFn | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if unknown_policy not in {"resend", "hold"}:
            raise ValueError("unknown_policy is 'resend' or 'hold'")
        self.app = app
        self.make_sender = senders
        self.render = render
        self.track = track
        self.quiet = quiet
        self.make_relay = relay
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.batch = batch
        self.concurrency = concurrency
        self.lease = timedelta(seconds=lease_seconds)
        self.policy = policy or RetryPolicy()
        self.unknown_policy = unknown_policy
        self.max_rate_wait = max_rate_wait
        self.public_url = public_url.rstrip("/") if public_url else None
        self.clock = clock
        # The buckets run on the dispatcher's clock, so a platform's retry_after and next_attempt_at agree
        # (the wall clock read directly when that is the clock: three reads per delivery).
        self.limits = Limits(clock=time.time if clock is utcnow else lambda: self.clock().timestamp())
        self.stats = Stats()
        self._senders: dict[int, Sender] = {}
        self._contexts: dict[int, _Context] = {}
        self._loading = asyncio.Lock()
        self._held: set[int] = set()
        self.pipelines = pipelines
        self.max_commit = max_commit
        # Outcomes waiting to be committed, and the task committing them (see _committed).
        self._outbox: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        # One limit on sends in flight for the whole worker, shared by the overlapping batches.
        self._in_flight = _Slots(concurrency)
        # One writing transaction at a time per worker: SQLite has a single writer, and a transaction
        # that read before writing fails at once (SQLITE_BUSY) instead of waiting when another
        # connection of ours wrote in between. Between processes the busy timeout does the waiting.
        self._writing = asyncio.Lock()
        self._accounts: set[int] = set()  # accounts this worker holds the lease of
        self._accounts_at = -1e9

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        async with self._writing, self.app.transaction() as session:
            yield session

    # --- claiming and recovery -------------------------------------------------------------------------

    async def recover(self) -> int:
        """Rows whose lease ran out (their worker died) become ``unknown``."""
        now = self.clock()
        async with self._write() as s:
            result = await s.execute(
                update(Delivery)
                .where(col(Delivery.state) == "sending", col(Delivery.lease_until) < now)
                .values(
                    state="unknown",
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                    last_error="lease expired during the send: outcome unknown",
                )
            )
        count = int(max(result.rowcount, 0))  # type: ignore[attr-defined]
        self.stats.recovered += count
        return count

    async def hold_accounts(self) -> set[int]:
        """Take (or keep) the lease of every active account no other live worker holds.

        One worker sends for an account at a time, so the account's token bucket is the only one pacing
        it; a dead worker's accounts are taken over when their lease expires."""
        now = self.clock()
        until = now + self.lease
        async with self._write() as s:
            insert_fn = upsert_insert(s)
            ids = (
                (await s.execute(select(col(Account.id)).where(col(Account.status) == "active")))
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

    async def claim(self, limit: int | None = None) -> list[Claimed]:
        """Mark up to ``limit`` due deliveries ``sending`` under our lease."""
        if asyncio.get_running_loop().time() - self._accounts_at > self.lease.total_seconds() / 4:
            await self.hold_accounts()
        if not self._accounts:
            return []
        now = self.clock()
        states = list(PENDING if self.unknown_policy == "resend" else PENDING[:-1])
        due = (
            select(col(Delivery.id))
            .join(Dispatch, col(Dispatch.id) == col(Delivery.dispatch_id))
            .join(ChatGroup, col(ChatGroup.id) == col(Delivery.group_id))
            .join(Account, col(Account.id) == col(ChatGroup.account_id))
            .where(
                col(Delivery.state).in_(states),
                or_(col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= now),
                col(Dispatch.status).in_(["planned", "running"]),
                col(Dispatch.scheduled_at) <= now,
                col(Account.status) == "active",
                col(Account.id).in_(self._accounts),
            )
            .order_by(col(Delivery.id))
            .limit(limit or self.batch)
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
                        state="sending",
                        lease_owner=self.worker_id,
                        lease_until=now + self.lease,
                        attempts=_T.c.attempts + 1,
                        updated_at=now,
                        resent_unknown=_T.c.resent_unknown + case((_T.c.state == "unknown", 1), else_=0),
                    )
                    .returning(_T.c.id, _T.c.dispatch_id, _T.c.group_id, _T.c.attempts, _T.c.reminders)
                )
            ).all()
            claimed = [Claimed(pk(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
            if claimed:
                await s.execute(
                    update(Dispatch)
                    .where(col(Dispatch.id).in_({c[1] for c in claimed}), col(Dispatch.status) == "planned")
                    .values(status="running")
                )
        self.stats.claimed += len(claimed)
        return sorted(claimed)

    async def renew(self) -> None:
        until = self.clock() + self.lease
        async with self._write() as s:
            await s.execute(
                update(Delivery)
                .where(col(Delivery.lease_owner) == self.worker_id, col(Delivery.state) == "sending")
                .values(lease_until=until)
            )
            await s.execute(
                update(AccountLease).where(col(AccountLease.owner) == self.worker_id).values(until=until)
            )

    # --- one batch ---------------------------------------------------------------------------------------

    async def _context(self, s: AsyncSession, dispatch_id: int) -> _Context:
        ctx = self._contexts.get(dispatch_id)
        if ctx is not None:
            return ctx
        # Overlapping batches of a new dispatch would each load the unit tree (a province's villages:
        # a tenth of a second each); the first loads it, the others wait for it.
        async with self._loading:
            return await self._load_context(s, dispatch_id)

    async def _load_context(self, s: AsyncSession, dispatch_id: int) -> _Context:
        ctx = self._contexts.get(dispatch_id)
        if ctx is None:
            dispatch = await s.get(Dispatch, dispatch_id)
            assert dispatch is not None
            revision = await s.get(ContentRevision, dispatch.revision_id)
            assert revision is not None
            files = (
                await s.execute(
                    select(Attachment)
                    .join(RevisionAttachment, col(RevisionAttachment.sha256) == col(Attachment.sha256))
                    .where(col(RevisionAttachment.revision_id) == revision.id)
                    .order_by(col(RevisionAttachment.position))
                )
            ).scalars()
            ctx = self._contexts[dispatch_id] = _Context(
                revision,
                media_from(list(files), self.public_url),
                await self._tree(s, dispatch.as_of),
                dispatch.quiet_hours,
            )
        return ctx

    async def _tree(self, s: AsyncSession, day: date) -> UnitTree:
        for ctx in self._contexts.values():
            if ctx.tree.as_of == day:
                return ctx.tree
        return await load_tree(s, day)

    async def take_turn(self, account: Account, max_wait: float = 30.0) -> None:
        """Wait for a token of ``account``'s bucket, for sends beside the broadcast (upkeep, summaries):
        they share the account's platform limit with it. Too long a wait is a :class:`RateLimited`."""
        await self.limits.take(pk(account.id), account.platform, account.settings, max_wait=max_wait)

    async def send_notice(self, account: Account, group: ChatGroup, text: str, key: str) -> SendResult:
        """A plain-text message of ours (a monthly summary, an escalation) straight to ``group``, in turn
        with the broadcast under the account's limit; errors are the adapter's."""
        await self.take_turn(account)
        target = Target(platform=group.platform, external_id=group.external_id, title=group.title)
        message = RenderedMessage(parts=(text,), fmt="plain", plain_parts=(text,))
        return await self.sender(account).send(target, message, key)

    def sender(self, account: Account) -> Sender:
        sender = self._senders.get(pk(account.id))
        if sender is None:
            sender = self._senders[pk(account.id)] = self.make_sender(account)
        return sender

    async def run_batch(self, limit: int | None = None) -> int:
        """Claim one batch, send it, commit every outcome. Returns how many were claimed."""
        claimed = await self.claim(limit)
        if not claimed:
            return 0
        async with self.app.transaction() as s:
            # Rows, not ORM objects: a thousand model instances per batch cost more than the claim.
            # On the connection: through the session, a Core select still builds its rows the ORM way.
            rows = await (await s.connection()).execute(
                select(*_GROUP_COLUMNS).where(_G.c.id.in_({c.group_id for c in claimed}))
            )
            groups = {int(g.id): cast(GroupView, g) for g in rows}
            accounts = {pk(a.id): a for a in (await s.execute(select(Account))).scalars()}
            contexts = {d: await self._context(s, d) for d in {c[1] for c in claimed}}
        renewer = asyncio.create_task(self._renew_every())

        async def one(c: Claimed) -> None:
            # A send keeps its slot until its outcome is committed, so what a crash can leave sent but
            # uncommitted (and send again) is bounded by ``concurrency``, the sends in flight.
            async with self._in_flight:
                outcome = await self._send_one(
                    c.delivery_id, groups[c.group_id], accounts, contexts[c.dispatch_id], c.reminders
                )
                outcome.attempts = c.attempts
                await self._committed(outcome)

        todo = iter(claimed)

        async def worker() -> None:
            for c in todo:  # shared: each claimed row is taken by one worker
                await one(c)

        try:
            # As many workers as can send at once, rather than a task per row waiting on the semaphore.
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(claimed)))))
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._outbox_drained()
        # Once per batch, not per commit: the check reads every row of a running dispatch.
        async with self._write() as s:
            await self._finish_dispatches(s)
        return len(claimed)

    async def _committed(self, outcome: Outcome) -> None:
        """Return once ``outcome`` is committed. Group commit: the first outcome starts a commit at
        once; those that arrive meanwhile go together in the next one. Slots wait for their commit,
        so its latency limits the rate: a timer (every 20 ms or 64 outcomes) had each slot waiting
        twice as long for its commit as for its send."""
        done = asyncio.get_running_loop().create_future()
        self._outbox.append((outcome, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_outbox())
        await done

    async def _commit_outbox(self) -> None:
        while self._outbox:
            ready, self._outbox = self._outbox[: self.max_commit], self._outbox[self.max_commit :]
            try:
                await self.commit([o for o, _ in ready])
            except Exception as exc:  # each waiting send gets the error; the next outcomes still go
                for _, done in ready:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:  # cancelled: so are the sends waiting for this commit
                for _, done in ready:
                    done.cancel()
                raise
            for _, done in ready:
                if not done.done():
                    done.set_result(None)

    async def _outbox_drained(self) -> None:
        """Wait for the committer (a stop must not give back rows whose outcome is on its way in)."""
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._committer)

    async def _renew_every(self) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            await self.renew()

    async def _send_one(
        self,
        delivery_id: int,
        group: GroupView,
        accounts: Mapping[int, Account],
        ctx: _Context,
        reminders: int = 0,
    ) -> Outcome:
        account = accounts[group.account_id]
        outcome = Outcome(delivery_id, pk(group.id), pk(account.id))
        if group.status != "active":
            outcome.state, outcome.note = "skipped", f"group is {group.status}"
        elif account.status != "active":
            outcome.state, outcome.note = "queued", f"account {account.name} is paused"
        elif (resume := self._quiet_until(group, ctx)) is not None:
            # A retry or a broadcast running late must not reach people at night either.
            outcome.state, outcome.due = "queued", resume
            outcome.note = f"quiet hours until {resume.astimezone(LOCAL_TZ):%H:%M %d/%m}"
        else:
            try:
                outcome.message_ids = await self._deliver(
                    delivery_id, group, account, accounts, ctx, reminders
                )
                outcome.state = "awaiting_confirmation" if group.mode == "relay" else "sent"
            except DeliveryError as exc:
                outcome.error = exc
            except CnsError as exc:  # a secret missing, a render refused: nothing a retry can fix
                outcome.error = (
                    AuthFailed(str(exc)) if isinstance(exc, ConfigError) else PermanentError(str(exc))
                )
            except Exception as exc:  # a bug must not stop the broadcast; the delivery is retried
                log.exception("delivery %s: unexpected error", delivery_id)
                outcome.error = TransientError(f"internal error: {type(exc).__name__}")
        if isinstance(outcome.error, RateLimited) and not is_held(outcome.error):
            # The platform's wait applies to everything else this account sends, not only this delivery.
            self.limits.account(pk(account.id), account.platform, account.settings).block(
                outcome.error.retry_after
            )
        if is_held(outcome.error):
            self.stats.held += 1
        elif outcome.error is not None:
            name = type(outcome.error).__name__
            self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
        return outcome

    def _quiet_until(self, group: GroupView, ctx: _Context) -> datetime | None:
        if not ctx.quiet_hours or self.quiet is None:
            return None
        node = ctx.tree.nodes.get(group.unit_id)
        return self.quiet(ctx.quiet_hours, node.level if node is not None else "", self.clock())

    async def _deliver(
        self,
        delivery_id: int,
        group: GroupView,
        account: Account,
        accounts: Mapping[int, Account],
        ctx: _Context,
        reminders: int = 0,
    ) -> tuple[str, ...]:
        variables = ctx.variables.get(group.unit_id)
        if variables is None:
            variables = ctx.variables[group.unit_id] = variables_for(ctx.tree, group.unit_id)
        target = target_for(group, ctx.tree, variables)
        if reminders and group.mode == "relay":
            target = dataclasses.replace(target, reminder=reminders)
        sender = self._relay(group, accounts) if group.mode == "relay" else self.sender(account)
        track = self.track(delivery_id) if self.track is not None else None
        message = self.render(group.platform, ctx.revision, ctx.media, target.variables, track=track)
        # Held by our own bucket: not sent, due again when it has a token, not charged as an attempt.
        await self.limits.take(
            pk(account.id), account.platform, account.settings, pk(group.id), self.max_rate_wait
        )
        return (await sender.send(target, message, f"delivery-{delivery_id}")).message_ids

    def _relay(self, group: GroupView, accounts: Mapping[int, Account]) -> Sender:
        if self.make_relay is None:
            raise PermanentError("relay groups need the relay adapter, which this worker was not given")
        channels: dict[str, Sender] = {}
        for account in sorted(accounts.values(), key=lambda a: (a.id != group.account_id, a.id)):
            if account.status == "active" and account.platform not in channels:
                channels[account.platform] = self.sender(account)
        return self.make_relay(channels)

    # --- committing outcomes -----------------------------------------------------------------------------

    async def commit(self, outcomes: Sequence[Outcome]) -> None:
        """Write every outcome in one transaction with one UPDATE and nothing else (side effects of
        errors aside): commits are serialised (one writer), so each statement here limits the whole
        worker's rate (a per-row ORM update cost ~1.5 ms; a SELECT of the attempt counts cost more than
        the UPDATE under load, so the claim returns them). The retry policy decides on errors here."""
        if not outcomes:
            return
        now = self.clock()
        async with self._write() as s:
            dialect = s.get_bind().dialect
            stored = _stored_time(dialect)
            rows = []
            for o in outcomes:
                row = self._row(o, o.attempts, now)
                row["next"] = stored(row["next"])
                if o.error is not None:
                    await self._side_effects(s, o, o.error, now)
                rows.append(row)
            await (await s.connection()).execute(
                _OUTCOMES[dialect.name],
                {"now": now, "owner": self.worker_id, "rows": json.dumps(rows, ensure_ascii=False)},
            )

    def _row(self, o: Outcome, attempts: int, now: datetime) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": o.delivery_id,
            "state": o.state,
            "next": None,
            "error": o.note,
            "attempts": attempts,
            "ids": [],
            "sent": False,
            "external": None,
        }
        if o.error is not None:
            decision = self.policy.decide(o.error, attempts, now)
            row.update(
                state=decision.state,
                next=decision.next_attempt_at,
                error=o.error.reason[:500],
                attempts=attempts if decision.counts else attempts - 1,
            )
        elif o.state == "queued":
            row["attempts"] = attempts - 1  # held, not tried
            row["next"] = o.due
        else:
            row.update(
                ids=list(o.message_ids),
                sent=True,
                external=o.message_ids[0] if o.message_ids else None,
            )
        final = row["state"]
        self.stats.sent += final in {"sent", "awaiting_confirmation"}
        self.stats.failed += final == "failed"
        self.stats.retried += final in {"errored", "queued"}
        return row

    async def _side_effects(self, s: AsyncSession, o: Outcome, error: DeliveryError, now: datetime) -> None:
        if isinstance(error, TargetGone):
            group = await s.get(ChatGroup, o.group_id)
            if group is not None:
                await mark_unreachable(s, group, error.reason, now)
        elif isinstance(error, TargetMigrated):
            group = await s.get(ChatGroup, o.group_id)
            if group is not None:
                migrate_group(s, group, error.new_id, now)
        elif isinstance(error, AuthFailed):
            account = await s.get(Account, o.account_id)
            if account is not None and account.status == "active":
                account.status, account.paused_reason = "paused", error.reason[:500]
                s.add(
                    Alert(
                        kind="account_paused",
                        account_id=o.account_id,
                        message=f"account {account.name} paused: {error.reason}; its deliveries are held",
                    )
                )
            sender = self._senders.pop(o.account_id, None)
            if sender is not None:
                await sender.close()

    async def _finish_dispatches(self, s: AsyncSession) -> None:
        pending = exists().where(
            col(Delivery.dispatch_id) == col(Dispatch.id), col(Delivery.state).in_([*PENDING, "sending"])
        )
        await s.execute(
            update(Dispatch).where(col(Dispatch.status) == "running", ~pending).values(status="done")
        )

    # --- the loop ----------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False, idle_sleep: float = 0.5) -> Stats:
        """Claim and send until ``stop`` is set (with ``until_idle``: until nothing is due or in flight)."""
        # Batches overlap: while one commits its outcomes or claims the next rows, another is sending.
        running: set[asyncio.Task[int]] = set()
        try:
            last_recovery = 0.0
            while not stop.is_set():
                # Leases last minutes: looking for expired ones a few times per lease is enough, and
                # each look takes the write lock the claims and commits need.
                if (
                    tick := asyncio.get_running_loop().time()
                ) - last_recovery > self.lease.total_seconds() / 4:
                    await self.recover()
                    last_recovery = tick
                while len(running) < self.pipelines:
                    running.add(asyncio.create_task(self.run_batch()))
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                if any(task.result() for task in done):
                    continue
                if running:  # nothing was due for this one: let the others finish before looking again
                    done, running = await asyncio.wait(running)
                    if any(task.result() for task in done):
                        continue
                if until_idle and not await self._anything_left():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_sleep)
            if running:
                await asyncio.wait(running)  # finish what is in flight
                for task in running:
                    task.result()
        finally:
            await self.release()
            await self.close()
        return self.stats

    async def _anything_left(self, horizon: timedelta = timedelta(seconds=60)) -> bool:
        """Deliveries in flight, or due within ``horizon`` without anyone's action (paused accounts and
        dispatches wait; a dispatch scheduled for tomorrow does not keep ``--until-idle`` running)."""
        soon = self.clock() + horizon
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
                            col(Dispatch.status).in_(["planned", "running"]),
                            col(Account.status) == "active",
                            col(Dispatch.scheduled_at) <= soon,
                            or_(
                                col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= soon
                            ),
                        ),
                        col(Delivery.state) == "sending",
                    )
                )
                .limit(1)
            )
            return row.first() is not None

    async def release(self) -> None:
        """Give back rows we claimed but never started (a stop in the middle of a batch)."""
        async with self._write() as s:
            await s.execute(
                update(Delivery)
                .where(col(Delivery.lease_owner) == self.worker_id, col(Delivery.state) == "sending")
                .values(
                    state="queued", lease_owner=None, lease_until=None, attempts=col(Delivery.attempts) - 1
                )
            )
            await s.execute(delete(AccountLease).where(col(AccountLease.owner) == self.worker_id))
        self._accounts.clear()
        self._accounts_at = -1e9

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()
