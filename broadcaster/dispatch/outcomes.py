"""What became of a claimed delivery, and what the queue must write for it.

The worker loop turns each send into an :class:`Outcome`; :func:`decide` turns that into a
:class:`Decided` row (the retry policy applied: next state, next attempt, attempts charged) and the
:data:`Effect` the error has beyond the delivery (a group gone or moved, an account refused). A queue
store writes both in one transaction; nothing here touches storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.domain.errors import AuthFailed, DeliveryError, TargetGone, TargetMigrated
from broadcaster.domain.states import DeliveryState


class Claimed(NamedTuple):
    delivery_id: int
    dispatch_id: int
    group_id: int
    attempts: int  # counting the attempt this claim starts
    reminders: int = 0  # relay: reminders asked for by upkeep (the package goes out again, as a reminder)
    message_ids: tuple[str, ...] = ()  # what earlier attempts sent of this post (a retry resumes after)


@dataclass(slots=True)
class Outcome:
    """What became of one claimed delivery: sent (``message_ids``), an error to decide on, or a state
    reached without a send (``skipped`` for an inactive group, ``queued`` for a paused account)."""

    delivery_id: int
    group_id: int
    account_id: int
    state: str = DeliveryState.SENT
    message_ids: tuple[str, ...] = ()
    error: DeliveryError | None = None
    note: str | None = None
    attempts: int = 1  # counting this one, as the claim set it
    due: datetime | None = None  # held back (quiet hours): due again then
    gone_admins: tuple[str, ...] = ()  # relay: admins (channel:address) their channel says are gone


@dataclass(frozen=True, slots=True)
class GroupGone:
    group_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class GroupMigrated:
    group_id: int
    new_id: str


@dataclass(frozen=True, slots=True)
class AccountRefused:
    account_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class AdminsGone:
    """Relay: these admins (``channel:address``) cannot be reached any more; the group stays reachable
    through the others (it becomes unreachable when none is left)."""

    group_id: int
    admins: tuple[str, ...]


Effect = GroupGone | GroupMigrated | AccountRefused | AdminsGone


@dataclass(slots=True)
class Decided:
    """The row a queue writes for one outcome (only if the delivery is still under our lease)."""

    delivery_id: int
    state: str
    next_attempt_at: datetime | None
    error: str | None
    attempts: int
    message_ids: tuple[str, ...] = ()
    sent: bool = False  # a send happened now (``sent_at`` keeps the first one)
    maybe_twice: bool = False  # retried after a failure that may have reached the platform
    effect: Effect | None = None

    @property
    def external_message_id(self) -> str | None:
        return self.message_ids[0] if self.message_ids else None


def effect_of(outcome: Outcome) -> Effect | None:
    error = outcome.error
    if isinstance(error, TargetGone):
        return GroupGone(outcome.group_id, error.reason)
    if isinstance(error, TargetMigrated):
        return GroupMigrated(outcome.group_id, error.new_id)
    if isinstance(error, AuthFailed):
        return AccountRefused(outcome.account_id, error.reason)
    if outcome.gone_admins:
        return AdminsGone(outcome.group_id, outcome.gone_admins)
    return None


def decide(outcome: Outcome, policy: RetryPolicy, now: datetime) -> Decided:
    """The row for ``outcome``: an error decided by ``policy`` from its type alone; a hold (``queued``)
    not charged as an attempt; a send recorded with its message ids."""
    attempts = outcome.attempts
    # Without a send, ``message_ids`` are what earlier attempts sent (a post that broke off at part k):
    # kept, so the retry resumes at part k and a recall deletes them.
    ids = outcome.message_ids
    if outcome.error is not None:
        decision = policy.decide(outcome.error, attempts, now)
        return Decided(
            outcome.delivery_id,
            decision.state,
            decision.next_attempt_at,
            outcome.error.reason[:500],
            attempts if decision.counts else attempts - 1,
            outcome.error.sent_ids or ids,
            effect=effect_of(outcome),
            maybe_twice=outcome.error.maybe_sent and decision.state == DeliveryState.ERRORED,
        )
    if outcome.state == DeliveryState.QUEUED:
        return Decided(
            outcome.delivery_id, DeliveryState.QUEUED, outcome.due, outcome.note, attempts - 1, ids
        )
    if outcome.state == DeliveryState.SKIPPED:
        return Decided(outcome.delivery_id, DeliveryState.SKIPPED, None, outcome.note, attempts, ids)
    return Decided(
        outcome.delivery_id,
        outcome.state,
        None,
        outcome.note,
        attempts,
        outcome.message_ids,
        sent=True,
        effect=effect_of(outcome),
    )
