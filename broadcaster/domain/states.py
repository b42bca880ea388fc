"""Every state, status and mode a stored row can be in, as :class:`enum.StrEnum`, and the named sets of
them the code asks about ("may a worker claim it?", "is the dispatch finished?").

The values are exactly the strings stored in the database (a member compares equal to its string, and
binds, prints and serialises as it), so the columns stay plain strings. Each column is limited to its
enum's values by a CHECK constraint (``ck_<table>_<column>``, declared with the models): a value not
listed here cannot be stored. Adding a value means a member here *and* a migration that widens the
constraint (tests/storage/test_migrations.py fails until both agree).

The sets are frozensets: ask them about membership (``state in PENDING``, ``col(...).in_(PENDING)``),
never rely on an order.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class DeliveryState(StrEnum):
    """``delivery.state``: one (dispatch, group) pair on its way (DESIGN.md, Delivery states)."""

    PLANNED = "planned"  # written by planning; due at its wave's time
    QUEUED = "queued"  # due again (held by quiet hours or a paused account, a migrated group, a reminder)
    SENDING = "sending"  # claimed by a worker under a lease; the send may be on its way
    SENT = "sent"  # the platform accepted it (direct groups)
    ERRORED = "errored"  # a transient error or a rate limit: tried again at next_attempt_at
    FAILED = "failed"  # a permanent error, or out of attempts
    UNKNOWN = "unknown"  # its worker died mid-send (lease expired): it may or may not have been posted
    SKIPPED = "skipped"  # never sent: cancelled, recalled before sending, group inactive or unreachable
    RECALLED = "recalled"  # was out, then taken back (deleted, or the relay admins told to remove it)
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # relay: the package reached the admins
    CONFIRMED = "confirmed"  # relay: an admin confirmed the post is in the group


PENDING: frozenset[DeliveryState] = frozenset(
    {DeliveryState.PLANNED, DeliveryState.QUEUED, DeliveryState.ERRORED, DeliveryState.UNKNOWN}
)
"""Not sent yet (as far as we know): what a worker may claim under the default ``resend`` policy for
unknown outcomes, and what cancel, recall and an unreachable group turn into ``skipped``."""

CLAIMABLE_WITHOUT_UNKNOWN: frozenset[DeliveryState] = PENDING - {DeliveryState.UNKNOWN}
"""What a worker claims under the ``hold`` policy: rows left ``unknown`` by a crash (possibly posted)
wait for a person instead of being sent again."""

UNFINISHED: frozenset[DeliveryState] = PENDING | {DeliveryState.SENDING}
"""Pending or in flight: a running dispatch with any of these is not done yet."""

FINAL: frozenset[DeliveryState] = frozenset(DeliveryState) - UNFINISHED
"""Finished as far as sending goes (``cns status`` counts them as finished): sent, failed, skipped,
recalled, or with the relay admins (awaiting confirmation, confirmed). The worker claims none of them;
a relay reminder re-queues an unconfirmed one on purpose."""

DELIVERED: frozenset[DeliveryState] = frozenset(
    {DeliveryState.SENT, DeliveryState.AWAITING_CONFIRMATION, DeliveryState.CONFIRMED}
)
"""Out on the platform now (or with the relay admins): what a recall takes back."""

DELIVERED_OR_RECALLED: frozenset[DeliveryState] = DELIVERED | {DeliveryState.RECALLED}
"""Went out, even if taken back later: what the monthly report counts as delivered."""

SEND_SUCCEEDED: frozenset[DeliveryState] = frozenset(
    {DeliveryState.SENT, DeliveryState.AWAITING_CONFIRMATION}
)
"""The state a successful send leaves: ``sent`` in a direct group, ``awaiting_confirmation`` via relay."""

TRIED_AGAIN: frozenset[DeliveryState] = frozenset({DeliveryState.ERRORED, DeliveryState.QUEUED})
"""Outcomes of a send that leave the delivery to be tried again (the worker's ``retried`` count)."""


@unique
class DispatchStatus(StrEnum):
    """``dispatch.status``: one approved revision sent to an audience."""

    PLANNED = "planned"  # planned, nothing claimed yet
    RUNNING = "running"  # a worker claimed some of its deliveries (or a relay reminder re-opened it)
    PAUSED = "paused"  # held by an editor (``cns pause``) until resumed
    DONE = "done"  # nothing pending or in flight is left
    CANCELLED = "cancelled"  # stopped for good; what was not sent is skipped
    RECALLED = "recalled"  # taken back everywhere it went


DISPATCH_SENDING: frozenset[DispatchStatus] = frozenset({DispatchStatus.PLANNED, DispatchStatus.RUNNING})
"""Its deliveries may be sent (the worker claims only from these) and it may be paused."""

DISPATCH_ENDED: frozenset[DispatchStatus] = frozenset({DispatchStatus.DONE, DispatchStatus.CANCELLED})
"""Nothing left to send or cancel: cancel refuses it and ``cns status --watch`` stops."""

DISPATCH_FOLLOWED_UP: frozenset[DispatchStatus] = frozenset({DispatchStatus.RUNNING, DispatchStatus.DONE})
"""Its unconfirmed relay posts are chased (reminder, escalation); a paused, cancelled or recalled one
is not: an editor stopped it."""


@unique
class GroupMode(StrEnum):
    """``chat_group.mode`` (and ``delivery.mode``, copied from its group when planned)."""

    DIRECT = "direct"  # we post into the group through an account
    RELAY = "relay"  # the post goes to the group's admins, who forward it and confirm


@unique
class GroupStatus(StrEnum):
    """``chat_group.status`` (and ``group_status_change.previous`` / ``.status``)."""

    ACTIVE = "active"
    UNREACHABLE = "unreachable"  # the platform says it is gone, or our bot was removed
    MIGRATED = "migrated"
    ARCHIVED = "archived"  # no longer one of ours: left out of reports


@unique
class AccountStatus(StrEnum):
    """``account.status``."""

    ACTIVE = "active"
    PAUSED = "paused"  # its credentials were refused: its deliveries are held until it is active again


@unique
class ContentStatus(StrEnum):
    """``content_item.status``: draft -> submitted -> approved | rejected -> archived."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    ARCHIVED = "archived"


@unique
class ApprovalDecision(StrEnum):
    """``approval.decision``: what an approver decided about one exact revision."""

    APPROVED = "approved"
    REJECTED = "rejected"


@unique
class InboundEventStatus(StrEnum):
    """``inbound_event.status``: a stored webhook request, before and after processing."""

    PENDING = "pending"  # stored, not processed yet
    WORKING = "working"  # claimed by a processor (back to pending when it died)
    DONE = "done"
    UNMATCHED = "unmatched"  # names no group or message we know: kept for an admin
    IGNORED = "ignored"  # nothing in it for us
    FAILED = "failed"  # processing failed: kept with the reason


EVENT_UNPROCESSED: frozenset[InboundEventStatus] = frozenset(
    {InboundEventStatus.PENDING, InboundEventStatus.WORKING}
)
"""Not processed yet: their raw bodies are kept whatever their age."""

EVENT_OUTCOMES: frozenset[InboundEventStatus] = frozenset(InboundEventStatus) - EVENT_UNPROCESSED
"""What processing makes of an event (counted by ``cns serve``'s metrics)."""

EVENT_FOR_ADMINS: frozenset[InboundEventStatus] = frozenset(
    {InboundEventStatus.UNMATCHED, InboundEventStatus.FAILED}
)
"""Outcomes a person should look at (``/api/events/unmatched``)."""


@unique
class SuggestionStatus(StrEnum):
    """``group_suggestion.status``: a group our bot was added to, not registered yet."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


@unique
class ReportPostState(StrEnum):
    """``report_post.state``: the monthly summary to one steering group."""

    SENDING = "sending"  # claimed (taken again when stale: its worker died)
    SENT = "sent"
    FAILED = "failed"  # a transient error: tried again
    REFUSED = "refused"  # the platform refused: an alert, not tried again


@unique
class CampaignStatus(StrEnum):
    """``campaign.status``."""

    ACTIVE = "active"
    ENDED = "ended"  # every post of the series was dispatched


def values_of(enum: type[StrEnum]) -> tuple[str, ...]:
    """The stored strings of ``enum``, in declaration order (plain ``str``: click's ``Choice`` matches
    enum members by name, not value)."""
    return tuple(member.value for member in enum)
