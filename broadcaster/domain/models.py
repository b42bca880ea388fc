"""The stored domain model: one SQLModel table per concept of DESIGN.md.

Conventions: integer surrogate keys; official codes are strings (leading zeros matter); validity
intervals are half-open ``[valid_from, valid_to)`` with ``valid_to = None`` meaning "still valid";
timestamps are aware UTC (:class:`UTCDateTime`); a state, status or mode column is a string that a
CHECK constraint limits to the values of its enum in :mod:`broadcaster.domain.states`. The Alembic
migrations must produce exactly this schema (tests/storage/test_migrations.py checks it on SQLite and
PostgreSQL, CHECK constraints included).
"""

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from broadcaster.domain.sqltypes import UTCDateTime, utcnow
from broadcaster.domain.states import (
    AccountStatus,
    ApprovalDecision,
    CampaignStatus,
    ContentStatus,
    DeliveryState,
    DispatchStatus,
    GroupMode,
    GroupStatus,
    InboundEventStatus,
    ReportPostState,
    SuggestionStatus,
    values_of,
)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def one_of(table: str, column: str, states: type[StrEnum]) -> CheckConstraint:
    """``ck_<table>_<column>``: the column holds one of the values of ``states`` (kept in the
    constraint's ``info`` for the tests). The columns stay strings; the database refuses anything else."""
    allowed = ", ".join(f"'{value}'" for value in values_of(states))
    return CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{table}_{column}", info={"states": states})


class TierLevel(SQLModel, table=True):
    """One level of the tier schema (province, district, commune, village) over a period."""

    __tablename__ = "tier_level"
    __table_args__ = (UniqueConstraint("name", "valid_from"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=32)
    rank: int
    label: str = Field(max_length=64)
    valid_from: date
    valid_to: date | None = None


class Unit(SQLModel, table=True):
    """An administrative unit over its period of validity. A rename or merge closes it and opens another."""

    __tablename__ = "unit"
    __table_args__ = (UniqueConstraint("code", "valid_from"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, index=True)
    name: str = Field(max_length=200)
    type: str = Field(max_length=32)
    level: str = Field(max_length=32)
    valid_from: date
    valid_to: date | None = None


class UnitLink(SQLModel, table=True):
    """Parent link of a unit over a period: re-parenting (a district abolished) keeps the unit itself."""

    __tablename__ = "unit_link"

    id: int | None = Field(default=None, primary_key=True)
    child_id: int = Field(foreign_key="unit.id", index=True)
    parent_id: int = Field(foreign_key="unit.id", index=True)
    valid_from: date
    valid_to: date | None = None


class UnitSuccession(SQLModel, table=True):
    """``old`` became (part of) ``new`` on ``effective``, from a reorganisation mapping."""

    __tablename__ = "unit_succession"
    __table_args__ = (UniqueConstraint("old_unit_id", "new_unit_id"),)

    id: int | None = Field(default=None, primary_key=True)
    old_unit_id: int = Field(foreign_key="unit.id", index=True)
    new_unit_id: int = Field(foreign_key="unit.id", index=True)
    effective: date
    kind: str = Field(max_length=16)


class UnitAlias(SQLModel, table=True):
    """Another accepted spelling of a unit's name (GSO vs. legal texts, e.g. "Pa Vệ Sử" / "Pa Vệ Sủ")."""

    __tablename__ = "unit_alias"
    __table_args__ = (UniqueConstraint("unit_id", "alias"),)

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    alias: str = Field(max_length=200)
    note: str = Field(default="", max_length=200)


class Account(SQLModel, table=True):
    """Credentials of one bot / OA / page / webhook endpoint. Holds a reference to a secret, never one."""

    __tablename__ = "account"
    __table_args__ = (one_of("account", "status", AccountStatus),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    platform: str = Field(max_length=16)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secret_ref: str | None = Field(default=None, max_length=200)
    status: str = Field(default=AccountStatus.ACTIVE, max_length=16)
    paused_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()


class ChatGroup(SQLModel, table=True):
    """One chat group / page / endpoint of a unit on a platform."""

    __tablename__ = "chat_group"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id"),
        one_of("chat_group", "mode", GroupMode),
        one_of("chat_group", "status", GroupStatus),
    )

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    platform: str = Field(max_length=16)
    account_id: int = Field(foreign_key="account.id", index=True)
    external_id: str = Field(max_length=128)
    title: str = Field(max_length=255)
    mode: str = Field(default=GroupMode.DIRECT, max_length=8)
    admins: list[dict[str, str]] = _json_list()
    status: str = Field(default=GroupStatus.ACTIVE, max_length=16)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class GroupStatusChange(SQLModel, table=True):
    """A group's status changed (the bot removed or added back, an import): a past month's report counts
    each group in the status it had then, not today's."""

    __tablename__ = "group_status_change"
    __table_args__ = (
        Index("ix_group_status_change_group_at", "group_id", "at"),
        one_of("group_status_change", "previous", GroupStatus),
        one_of("group_status_change", "status", GroupStatus),
    )

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(foreign_key="chat_group.id")
    at: datetime = _ts()
    previous: str = Field(max_length=16)
    status: str = Field(max_length=16)
    reason: str = Field(default="", max_length=200)


class ReportPost(SQLModel, table=True):
    """The monthly summary posted to one steering group: one row per (month, group), taken before the
    send, so several workers never post it twice."""

    __tablename__ = "report_post"
    __table_args__ = (UniqueConstraint("month", "group_id"), one_of("report_post", "state", ReportPostState))

    id: int | None = Field(default=None, primary_key=True)
    month: str = Field(max_length=7)
    group_id: int = Field(foreign_key="chat_group.id")
    at: datetime = _ts()
    state: str = Field(default=ReportPostState.SENDING, max_length=16)
    note: str | None = Field(default=None, max_length=500)


class User(SQLModel, table=True):
    """A person who acts in the system; ``scope_unit_id`` is the root of the subtree they act on."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    full_name: str = Field(default="", max_length=200)
    role: str = Field(max_length=16)
    scope_unit_id: int | None = Field(default=None, foreign_key="unit.id")
    active: bool = True
    created_at: datetime = _ts()


class AuditEntry(SQLModel, table=True):
    """Who changed what, when, with the state before and after."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    actor: str = Field(max_length=64, index=True)
    action: str = Field(max_length=64)
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=200)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Attachment(SQLModel, table=True):
    """A file stored once by the SHA-256 of its bytes."""

    __tablename__ = "attachment"

    sha256: str = Field(primary_key=True, max_length=64)
    filename: str = Field(max_length=255)
    media_type: str = Field(max_length=100)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts()


class ContentItem(SQLModel, table=True):
    """A piece of guidance content; its text lives in immutable revisions."""

    __tablename__ = "content_item"
    __table_args__ = (one_of("content_item", "status", ContentStatus),)

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default=ContentStatus.DRAFT, max_length=16, index=True)
    author_id: int = Field(foreign_key="app_user.id")
    latest_revision: int = 1
    approved_revision: int | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ContentRevision(SQLModel, table=True):
    """One immutable version of a content item; ``sha256`` pins its exact text, links and attachments."""

    __tablename__ = "content_revision"
    __table_args__ = (UniqueConstraint("content_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    content_id: int = Field(foreign_key="content_item.id", index=True)
    number: int
    title: str = Field(max_length=200)
    body: str
    category: str = Field(max_length=64)
    links: list[str] = _json_list()
    attachments: list[str] = _json_list()
    sha256: str = Field(max_length=64)
    author_id: int = Field(foreign_key="app_user.id")
    created_at: datetime = _ts()


class RevisionAttachment(SQLModel, table=True):
    """Keeps attachments referenced by revisions from being deleted (foreign keys on both sides)."""

    __tablename__ = "revision_attachment"

    revision_id: int = Field(foreign_key="content_revision.id", primary_key=True)
    sha256: str = Field(foreign_key="attachment.sha256", primary_key=True, max_length=64)
    position: int


class Approval(SQLModel, table=True):
    """A decision on one exact revision (by its hash)."""

    __tablename__ = "approval"
    __table_args__ = (one_of("approval", "decision", ApprovalDecision),)

    id: int | None = Field(default=None, primary_key=True)
    content_id: int = Field(foreign_key="content_item.id", index=True)
    revision_id: int = Field(foreign_key="content_revision.id")
    revision_sha256: str = Field(max_length=64)
    decision: str = Field(max_length=16)
    reason: str | None = None
    user_id: int = Field(foreign_key="app_user.id")
    at: datetime = _ts()


class Dispatch(SQLModel, table=True):
    """One approved revision sent to an audience (unit subtrees x tiers x platforms) at a time."""

    __tablename__ = "dispatch"
    __table_args__ = (one_of("dispatch", "status", DispatchStatus),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    content_id: int = Field(foreign_key="content_item.id", index=True)
    revision_id: int = Field(foreign_key="content_revision.id")
    revision_sha256: str = Field(max_length=64)
    approval_id: int = Field(foreign_key="approval.id")
    created_by: int = Field(foreign_key="app_user.id")
    scope: list[str] = _json_list()
    tiers: list[str] = _json_list()
    platforms: list[str] = _json_list()
    scheduled_at: datetime = Field(sa_type=UTCDateTime)
    as_of: date
    status: str = Field(default=DispatchStatus.PLANNED, max_length=16)
    # Local quiet hours per tier ("21:00-06:00,village=20:00-07:00"; "" = none): kept so that retries and
    # a broadcast running late hold back too, not only the planned send times.
    quiet_hours: str = Field(default="", max_length=200)
    created_at: datetime = _ts()


class Delivery(SQLModel, table=True):
    """One (dispatch, group) pair: the unit of sending, retrying and reporting."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("dispatch_id", "group_id"),
        Index("ix_delivery_state_next", "state", "next_attempt_at"),
        one_of("delivery", "mode", GroupMode),
        one_of("delivery", "state", DeliveryState),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    dispatch_id: int = Field(sa_column=Column(Integer, ForeignKey("dispatch.id"), nullable=False))
    group_id: int = Field(foreign_key="chat_group.id", index=True)
    unit_id: int = Field(foreign_key="unit.id")
    level: str = Field(max_length=32)
    platform: str = Field(max_length=16)
    mode: str = Field(max_length=8)
    state: str = Field(default=DeliveryState.PLANNED, max_length=24)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    external_message_id: str | None = Field(default=None, max_length=128)
    message_ids: list[str] = _json_list()
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When this claim's request was about to leave (None: claimed, not yet handed to a sender). A row
    # whose lease runs out is "unknown" (maybe sent) only if started; otherwise it simply waits again.
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resent_unknown: int = 0  # times re-sent after a crash left it "unknown": the possible duplicates
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # relay: the admin posted it
    reminders: int = 0  # relay: reminders sent to the admins so far
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # relay: commune team told
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class InboundEvent(SQLModel, table=True):
    """One webhook request as received, stored before it is answered (persist first, process after).

    ``key`` is the platform's event id (Telegram ``update_id``, ``webhook-id``, Zalo ``msg_id``, a hash of
    Meta's body), unique per account, so a redelivered event is stored once. ``body`` is the raw bytes,
    purged after the retention period; ``actor_hash`` lets a person's data be found and deleted.
    """

    __tablename__ = "inbound_event"
    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        Index("ix_inbound_event_status_id", "status", "id"),
        one_of("inbound_event", "status", InboundEventStatus),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("account.id"), nullable=False))
    platform: str = Field(max_length=16)
    key: str = Field(max_length=200)
    received_at: datetime = _ts(index=True)
    status: str = Field(default=InboundEventStatus.PENDING, max_length=16)
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    actor_hash: str | None = Field(default=None, max_length=64, index=True)
    note: str | None = Field(default=None, max_length=500)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Interaction(SQLModel, table=True):
    """What people did with a post: a reply, a reaction, a click, a relay confirmation, a read count.

    Linked to the delivery when the platform says which message it answers; ``actor_hash`` is a keyed
    hash of the platform user id (never the id itself). ``count`` is +1 for one person's action, -1 for a
    reaction taken back, or a delta of an anonymous counter (Telegram channel reaction counts)."""

    __tablename__ = "interaction"
    __table_args__ = (Index("ix_interaction_unit_at", "unit_id", "at"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    kind: str = Field(max_length=16)  # reply, reaction, click, confirmation, read
    at: datetime = _ts(index=True)
    platform: str = Field(max_length=16)
    account_id: int | None = Field(default=None, foreign_key="account.id")
    group_id: int | None = Field(default=None, foreign_key="chat_group.id", index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id")
    delivery_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("delivery.id"), index=True)
    )
    dispatch_id: int | None = Field(default=None, foreign_key="dispatch.id", index=True)
    event_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("inbound_event.id")))
    actor_hash: str | None = Field(default=None, max_length=64, index=True)
    text: str | None = None
    value: str | None = Field(default=None, max_length=64)
    count: int = 1
    external_id: str | None = Field(default=None, max_length=128)


class MemberSnapshot(SQLModel, table=True):
    """A group's member (or Page follower) count as the platform reported it at ``at``. A group with
    no snapshot has an unknown count, never 0."""

    __tablename__ = "member_snapshot"
    __table_args__ = (Index("ix_member_snapshot_group_at", "group_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(foreign_key="chat_group.id")
    at: datetime = _ts()
    members: int
    source: str = Field(max_length=32)


class GroupSuggestion(SQLModel, table=True):
    """A group our bot was added to that is not registered yet: matched to a unit by its title, for an
    admin to confirm (``cns groups suggestions``)."""

    __tablename__ = "group_suggestion"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id"),
        one_of("group_suggestion", "status", SuggestionStatus),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    platform: str = Field(max_length=16)
    external_id: str = Field(max_length=128)
    title: str = Field(max_length=255)
    unit_id: int | None = Field(default=None, foreign_key="unit.id")
    match: str = Field(default="none", max_length=16)  # exact, alias, fuzzy, none
    status: str = Field(default=SuggestionStatus.PENDING, max_length=16)
    at: datetime = _ts()


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API, acting as its user (role and scope). Only its hash is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    name: str = Field(max_length=64)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = _ts()
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Campaign(SQLModel, table=True):
    """A named series of posts sent on a recurrence (RFC 5545 RRULE in Asia/Ho_Chi_Minh): each
    occurrence dispatches the next post of the series."""

    __tablename__ = "campaign"
    __table_args__ = (one_of("campaign", "status", CampaignStatus),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    posts: list[int] = _json_list()
    rrule: str = Field(max_length=500)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    scope: list[str] = _json_list()
    tiers: list[str] = _json_list()
    platforms: list[str] = _json_list()
    waves: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    quiet_hours: str = Field(default="21:00-06:00", max_length=20)
    created_by: int = Field(foreign_key="app_user.id")
    status: str = Field(default=CampaignStatus.ACTIVE, max_length=16)
    next_post: int = 0
    last_occurrence: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _ts()


class AccountLease(SQLModel, table=True):
    """Which worker sends for an account until when: one at a time, so the account's rate limit holds
    across workers; taken over when it expires (its worker died)."""

    __tablename__ = "account_lease"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    owner: str = Field(max_length=64)
    until: datetime = Field(sa_type=UTCDateTime)


class AccountRate(SQLModel, table=True):
    """The pace a platform really allowed an account (learned from its 429s, below the configured rate),
    so a worker that starts again does not have to learn it again with more 429s."""

    __tablename__ = "account_rate"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    rate: float  # messages per second
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Alert(SQLModel, table=True):
    """Something an admin must look at: a paused account, an unreachable group, a stuck dispatch."""

    __tablename__ = "alert"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    kind: str = Field(max_length=32)
    account_id: int | None = Field(default=None, foreign_key="account.id")
    group_id: int | None = Field(default=None, foreign_key="chat_group.id")
    dispatch_id: int | None = Field(default=None, foreign_key="dispatch.id")
    message: str
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def pk(value: int | None) -> int:
    """A primary key read back from the database (never None once flushed)."""
    if value is None:
        raise RuntimeError("object has no primary key yet: flush the session first")
    return value
