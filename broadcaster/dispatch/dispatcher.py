"""The worker loop: claim due deliveries from the queue, send them through the adapters, commit the
outcomes.

Where deliveries wait, and how they are claimed under a lease, renewed, committed and released, is the
queue's (:mod:`broadcaster.dispatch.queue`, SQLite/PostgreSQL, with an in-memory twin); what an outcome
becomes is :mod:`broadcaster.dispatch.outcomes` (the retry policy decides on an error from its type
alone). Here: batches that overlap, sends in flight bounded by ``concurrency`` (a send keeps its slot
until its outcome is committed, so a crash can leave at most that many sent-but-uncommitted, which the
next worker sends again and counts as ``resent_unknown``; policy ``hold`` leaves them for a person), the
group commit of outcomes, rate limits, quiet hours, relay and rendering.

When the database is unavailable (:class:`DatabaseUnavailable`: refused, dropped, timed out), the worker
says so once and waits for it: no claim and no new send; sends in flight finish and their outcomes wait
in memory, still under our lease; the connection is tried again with capped exponential backoff. When it
answers, our leases are extended first (nothing expires into ``unknown`` because of the outage), rows a
claim took as the connection broke are given back, then the waiting outcomes are committed and claiming
resumes: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcaster.dispatch.outcomes import AccountRefused, Claimed, Decided, Outcome, decide
from broadcaster.dispatch.queue import Queue, SqlQueue
from broadcaster.dispatch.ratelimit import Limits, is_held
from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.dispatch.targets import GroupView, revision_media, target_for, variables_for
from broadcaster.domain.errors import (
    AuthFailed,
    CnsError,
    ConfigError,
    DatabaseUnavailable,
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.domain.models import (
    Account,
    ChatGroup,
    ContentRevision,
    Dispatch,
    pk,
)
from broadcaster.domain.ports import Media, RenderedMessage, Sender, SendResult, Target
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import (
    SEND_SUCCEEDED,
    TRIED_AGAIN,
    AccountStatus,
    DeliveryState,
    GroupMode,
    GroupStatus,
)
from broadcaster.domain.timeutil import LOCAL_TZ
from broadcaster.storage.app import App
from broadcaster.units.tree import UnitTree, load_tree

log = logging.getLogger("cns.dispatcher")
T = TypeVar("T")

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
    outages: int = 0  # times the database became unavailable (and the worker waited for it)


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
        queue: Queue | None = None,
        db_retry: tuple[float, float] = (0.5, 10.0),
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
        self._rates_changed: set[int] = set()  # accounts whose rate a 429 lowered, to be remembered
        self._retired: list[Sender] = []  # adapters of accounts paused while running (see commit)
        self._contexts: dict[int, _Context] = {}
        self._loading = asyncio.Lock()
        self._held: set[int] = set()
        self.pipelines = pipelines
        self.max_commit = max_commit
        # Outcomes waiting to be committed, and the task committing them (see _committed).
        self._outbox: list[tuple[Outcome | None, int | None, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        # One limit on sends in flight for the whole worker, shared by the overlapping batches.
        self._in_flight = _Slots(concurrency)
        self.queue: Queue = queue or SqlQueue(app, self.worker_id, self.lease)
        # The database: up (set), or unavailable (clear) with one task waiting for it (_reconnect),
        # first and longest wait between its tries.
        self.db_retry = db_retry
        self._db_up = asyncio.Event()
        self._db_up.set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._db_calls = 0  # queue calls in flight: an outage ends once those from before have settled
        self._holding: set[int] = set()  # claimed, outcome not committed yet
        self._claim_in_doubt = False  # a claim failed with the connection: it may have been committed
        self._stop: asyncio.Event | None = None  # run()'s: a claim waiting for the database gives up

    # --- the queue -------------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Rows whose lease ran out (their worker died) become ``unknown``."""
        count = await self.queue.recover(self.clock())
        self.stats.recovered += count
        return count

    async def hold_accounts(self) -> set[int]:
        """Take (or keep) the lease of every active account no other live worker holds: one worker
        sends for an account at a time, so its token bucket is the only one pacing it."""
        return await self.queue.hold_accounts(self.clock())

    async def claim(self, limit: int | None = None) -> list[Claimed]:
        """Mark up to ``limit`` due deliveries ``sending`` under our lease."""
        claimed = await self.queue.claim(
            self.clock(), limit or self.batch, unknown=self.unknown_policy == "resend"
        )
        self.stats.claimed += len(claimed)
        return claimed

    async def renew(self) -> None:
        await self.queue.renew(self.clock())

    async def release(self) -> None:
        """Give back rows we claimed but never started (a stop in the middle of a batch)."""
        await self.queue.release()

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
            ctx = self._contexts[dispatch_id] = _Context(
                revision,
                await revision_media(s, revision.id, self.public_url),
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
        claimed = await self._claim(limit)
        if not claimed:
            return 0
        groups, accounts, contexts = await self._db(lambda: self._batch_data(claimed))
        renewer = asyncio.create_task(self._renew_every())

        todo = iter(claimed)  # shared: each claimed row is taken by one worker

        async def worker() -> None:
            # A worker sends one row at a time and holds a send slot while it has rows: a row is marked
            # started (durably) before its request leaves, in the same commit as the previous row's
            # outcome, so what a crash can leave started but uncommitted is at most one row per slot
            # (``concurrency``), and only those count as possibly sent when another worker resends them.
            c = next(todo, None)
            if c is None:
                return
            async with self._in_flight:
                await self._committed(None, c.delivery_id)
                while c is not None:
                    if not self._db_up.is_set():  # no new send while outcomes cannot be written
                        await self._db_up.wait()
                    outcome = await self._send_one(
                        c.delivery_id,
                        groups[c.group_id],
                        accounts,
                        contexts[c.dispatch_id],
                        c.reminders,
                        c.message_ids,
                    )
                    outcome.attempts = c.attempts
                    following = next(todo, None)
                    await self._committed(outcome, following.delivery_id if following else None)
                    c = following

        try:
            # As many workers as can send at once, rather than a task per row waiting on the semaphore.
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(claimed)))))
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._outbox_drained()
        await self._db(self.queue.finish_dispatches)  # once per batch: it reads every running dispatch
        if self._rates_changed:
            await self._db(self._remember_rates)
        return len(claimed)

    async def _batch_data(
        self, claimed: Sequence[Claimed]
    ) -> tuple[dict[int, GroupView], dict[int, Account], dict[int, _Context]]:
        async with self.app.transaction() as s:
            # Rows, not ORM objects: a thousand model instances per batch cost more than the claim.
            # On the connection: through the session, a Core select still builds its rows the ORM way.
            rows = await (await s.connection()).execute(
                select(*_GROUP_COLUMNS).where(_G.c.id.in_({c.group_id for c in claimed}))
            )
            groups = {int(g.id): cast(GroupView, g) for g in rows}
            accounts = {pk(a.id): a for a in (await s.execute(select(Account))).scalars()}
            contexts = {d: await self._context(s, d) for d in {c[1] for c in claimed}}
        return groups, accounts, contexts

    async def _committed(self, outcome: Outcome | None, start: int | None = None) -> None:
        """Return once ``outcome`` is committed (and the row ``start`` marked started). Group commit: the
        first one starts a commit at once; those that arrive meanwhile go together in the next one.
        Slots wait for their commit, so its latency limits the rate: a timer (every 20 ms or 64
        outcomes) had each slot waiting twice as long for its commit as for its send."""
        done = asyncio.get_running_loop().create_future()
        self._outbox.append((outcome, start, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_outbox())
        await done

    async def _commit_outbox(self) -> None:
        while self._outbox:
            ready, self._outbox = self._outbox[: self.max_commit], self._outbox[self.max_commit :]
            try:
                await self.commit(
                    [o for o, _, _ in ready if o is not None], start=[i for _, i, _ in ready if i is not None]
                )
            except Exception as exc:  # each waiting send gets the error; the next outcomes still go
                for _, _, done in ready:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:  # cancelled: so are the sends waiting for this commit
                for _, _, done in ready:
                    done.cancel()
                raise
            for _, _, done in ready:
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
            if self._db_up.is_set():  # else the leases are extended as soon as the database is back
                try:
                    await self._attempt(self.renew)
                except DatabaseUnavailable as exc:
                    self._unavailable(exc)

    async def _send_one(
        self,
        delivery_id: int,
        group: GroupView,
        accounts: Mapping[int, Account],
        ctx: _Context,
        reminders: int = 0,
        sent: tuple[str, ...] = (),
    ) -> Outcome:
        account = accounts[group.account_id]
        outcome = Outcome(delivery_id, pk(group.id), pk(account.id), message_ids=sent)
        if group.status != GroupStatus.ACTIVE:
            outcome.state, outcome.note = DeliveryState.SKIPPED, f"group is {group.status}"
        elif account.status != AccountStatus.ACTIVE:
            outcome.state, outcome.note = DeliveryState.QUEUED, f"account {account.name} is paused"
        elif (resume := self._quiet_until(group, ctx)) is not None:
            # A retry or a broadcast running late must not reach people at night either.
            outcome.state, outcome.due = DeliveryState.QUEUED, resume
            outcome.note = f"quiet hours until {resume.astimezone(LOCAL_TZ):%H:%M %d/%m}"
        else:
            try:
                result = await self._deliver(delivery_id, group, account, accounts, ctx, reminders, sent)
                outcome.message_ids, outcome.gone_admins = result.message_ids, result.gone_admins
                outcome.state = (
                    DeliveryState.AWAITING_CONFIRMATION
                    if group.mode == GroupMode.RELAY
                    else DeliveryState.SENT
                )
            except DeliveryError as exc:
                outcome.error, outcome.gone_admins = exc, exc.gone_admins
            except CnsError as exc:  # a secret missing, a render refused: nothing a retry can fix
                outcome.error = (
                    AuthFailed(str(exc)) if isinstance(exc, ConfigError) else PermanentError(str(exc))
                )
            except Exception as exc:  # a bug must not stop the broadcast; the delivery is retried
                log.exception("delivery %s: unexpected error", delivery_id)
                outcome.error = TransientError(f"internal error: {type(exc).__name__}")
        # A platform's 429 applies to everything else this account sends, not only this delivery, and
        # its limit is lower than the pace we kept: the account's rate comes down to it.
        if (
            isinstance(outcome.error, RateLimited)
            and not is_held(outcome.error)
            and self.limits.slow_down(
                pk(account.id), account.platform, account.settings, outcome.error.retry_after
            )
        ):
            rate = self.limits.accounts[pk(account.id)].rate
            self._rates_changed.add(pk(account.id))
            log.info("account %s: 429 from %s, pacing at %.1f/s now", account.name, account.platform, rate)
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
        sent: tuple[str, ...] = (),
    ) -> SendResult:
        variables = ctx.variables.get(group.unit_id)
        if variables is None:
            variables = ctx.variables[group.unit_id] = variables_for(ctx.tree, group.unit_id)
        target = target_for(group, ctx.tree, variables)
        if reminders and group.mode == GroupMode.RELAY:
            target = dataclasses.replace(target, reminder=reminders)
        elif sent:  # an earlier attempt broke off after these messages: the post resumes after them
            target = dataclasses.replace(target, sent=sent)
        sender = self._relay(group, accounts) if group.mode == GroupMode.RELAY else self.sender(account)
        track = self.track(delivery_id) if self.track is not None else None
        message = self.render(group.platform, ctx.revision, ctx.media, target.variables, track=track)
        # Held by our own bucket: not sent, due again when it has a token, not charged as an attempt.
        await self.limits.take(
            pk(account.id), account.platform, account.settings, pk(group.id), self.max_rate_wait
        )
        return await sender.send(target, message, f"delivery-{delivery_id}")

    def _relay(self, group: GroupView, accounts: Mapping[int, Account]) -> Sender:
        if self.make_relay is None:
            raise PermanentError("relay groups need the relay adapter, which this worker was not given")
        channels: dict[str, Sender] = {}
        for account in sorted(accounts.values(), key=lambda a: (a.id != group.account_id, a.id)):
            if account.status == AccountStatus.ACTIVE and account.platform not in channels:
                try:
                    channels[account.platform] = self.sender(account)
                except CnsError as exc:
                    # Another account's broken settings must not fail (or pause the account of) a relay
                    # delivery: that channel is left out; its own sends pause it when they fail.
                    if account.id == group.account_id:
                        raise
                    log.warning("relay: channel %s left out: %s", account.name, exc)
        return self.make_relay(channels)

    # --- committing outcomes -----------------------------------------------------------------------------

    async def commit(self, outcomes: Sequence[Outcome], start: Sequence[int] = ()) -> None:
        """Decide each outcome (the retry policy on errors) and write them all in one queue commit, with
        the rows in ``start`` marked started; commits are serialised (one writer), so what happens here
        limits the whole worker's rate."""
        if not outcomes and not start:
            return
        now = self.clock()
        rows = [decide(o, self.policy, now) for o in outcomes]
        for row in rows:
            self._count(row)
        # Decided once: while the database is unavailable the same rows wait and are written when it
        # is back (under our lease, extended then; a commit whose answer was lost is written again
        # harmlessly: the rows it wrote are no longer leased to us).
        await self._db(lambda: self.queue.commit(rows, now, start))
        self._holding.difference_update(row.delivery_id for row in rows)
        for row in rows:
            if isinstance(row.effect, AccountRefused):
                # Paused: new sends build a new adapter once it is resumed. This one is closed when the
                # worker stops, not now: sends of the account still in flight share its HTTP session
                # (closing it under them turned each into "Session is closed" and a lost send).
                sender = self._senders.pop(row.effect.account_id, None)
                if sender is not None:
                    self._retired.append(sender)

    def _count(self, row: Decided) -> None:
        self.stats.sent += row.state in SEND_SUCCEEDED
        self.stats.failed += row.state == DeliveryState.FAILED
        self.stats.retried += row.state in TRIED_AGAIN

    # --- the loop ----------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False, idle_sleep: float = 0.5) -> Stats:
        """Claim and send until ``stop`` is set (with ``until_idle``: until nothing is due or in flight)."""
        # Batches overlap: while one commits its outcomes or claims the next rows, another is sending.
        running: set[asyncio.Task[int]] = set()
        self._stop = stop
        try:
            # Where each account's pace starts: what its platform allowed last time (learned from 429s).
            self.limits.learned.update(await self._db(self.queue.learned_rates))
            last_recovery = 0.0
            while not stop.is_set():
                # Leases last minutes: looking for expired ones a few times per lease is enough, and
                # each look takes the write lock the claims and commits need.
                if (
                    tick := asyncio.get_running_loop().time()
                ) - last_recovery > self.lease.total_seconds() / 4:
                    await self._db(self.recover)
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
                if until_idle and not await self._db(self._anything_left):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_sleep)
            if running:
                await asyncio.wait(running)  # finish what is in flight
                for task in running:
                    task.result()
        finally:
            with contextlib.suppress(Exception):  # remembering the pace must not stop a clean stop
                await self._attempt(lambda: self._remember_rates(everyone=True))
            await self._released()
            await self.close()
        return self.stats

    async def _remember_rates(self, *, everyone: bool = False) -> None:
        """Keep the rates lowered by 429s (``everyone``: every account's, at a stop; back at its ceiling,
        an account's learned rate is forgotten)."""
        ids = set(self.limits.accounts) if everyone else self._rates_changed
        rates = {}
        for account_id in ids:
            bucket = self.limits.accounts[account_id]
            if bucket.decreases or account_id in self.limits.learned:
                rates[account_id] = bucket.rate if bucket.rate < bucket.ceiling else None
        self._rates_changed = set()
        if rates:
            await self.queue.remember_rates(rates, self.clock())

    async def _released(self) -> None:
        """Give back what is claimed and not started, waiting for the database if it is unavailable
        (the rows would expire into ``unknown``); not when the run is being cancelled."""
        task = asyncio.current_task()
        try:
            if task is not None and task.cancelling():
                await self._attempt(self.release)
            else:
                await self._db(self.release)
        except DatabaseUnavailable as exc:
            log.warning("claimed deliveries not given back (their leases will expire): %s", exc)
        finally:
            if self._reconnecting is not None:
                self._reconnecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reconnecting
                self._reconnecting = None
            self._stop = None

    # --- the database unavailable --------------------------------------------------------------------

    async def _attempt(self, call: Callable[[], Awaitable[T]]) -> T:
        """One try of a queue call, counted while in flight."""
        self._db_calls += 1
        try:
            return await call()
        finally:
            self._db_calls -= 1

    async def _db(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, once the database is up; while it is unavailable, wait for it and try again."""
        while True:
            if not self._db_up.is_set():
                await self._db_up.wait()
            try:
                return await self._attempt(call)
            except DatabaseUnavailable as exc:
                self._unavailable(exc)

    async def _claim(self, limit: int | None) -> list[Claimed]:
        """:meth:`claim` once the database is up, the claimed rows held (see :meth:`_back`); nothing
        once ``stop`` is set."""

        async def claim() -> list[Claimed]:
            claimed = await self.claim(limit)
            self._holding.update(c.delivery_id for c in claimed)
            return claimed

        while True:
            if not self._db_up.is_set():
                await self._up_or_stopped()
            if self._stop is not None and self._stop.is_set():
                return []
            try:
                return await self._attempt(claim)
            except DatabaseUnavailable as exc:
                self._claim_in_doubt = True  # its commit may have reached the database, not its answer
                self._unavailable(exc)

    async def _up_or_stopped(self) -> None:
        waits = [asyncio.ensure_future(self._db_up.wait())]
        if self._stop is not None:
            waits.append(asyncio.ensure_future(self._stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _unavailable(self, exc: DatabaseUnavailable) -> None:
        """The database did not answer: said once per outage, then one task tries it until it does."""
        if not self._db_up.is_set():
            return
        self._db_up.clear()
        self.stats.outages += 1
        log.warning("%s; retrying", exc)
        self._reconnecting = asyncio.create_task(self._reconnect(exc, time.monotonic()))

    async def _reconnect(self, exc: DatabaseUnavailable, since: float) -> None:
        delay, longest = self.db_retry
        tries = 0
        while True:
            await asyncio.sleep(delay)
            if self._db_calls:  # calls made before the outage have not settled yet: they will
                continue
            delay = min(delay * 2, longest)
            tries += 1
            try:
                await self._back()
            except DatabaseUnavailable as again:
                log.debug("database still unavailable: %s", again)
                continue
            break
        log.info(
            "database %s available again after %.1f s (tried %d times); resuming",
            exc.where,
            time.monotonic() - since,
            tries,
        )
        self._reconnecting = None
        self._db_up.set()

    async def _back(self) -> None:
        """The first calls once the database answers: our leases extended (the outage may have outlasted
        them), then the rows a claim may have taken as the connection broke given back."""
        await self.queue.renew(self.clock())
        if self._claim_in_doubt:
            given = await self.queue.give_back(self._holding)
            self._claim_in_doubt = False
            if given:
                log.info("%d deliveries claimed as the database went away given back", given)

    async def _anything_left(self, horizon: timedelta = timedelta(seconds=60)) -> bool:
        """Deliveries in flight, or due within ``horizon`` without anyone's action (paused accounts and
        dispatches wait; a dispatch scheduled for tomorrow does not keep ``--until-idle`` running)."""
        return await self.queue.anything_left(self.clock() + horizon)

    async def close(self) -> None:
        for sender in (*self._senders.values(), *self._retired):
            await sender.close()
        self._senders.clear()
        self._retired.clear()
