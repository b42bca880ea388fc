"""Content items and their approval: draft -> submitted -> approved | rejected (reason) -> archived.

Every edit adds an immutable revision whose SHA-256 covers title, body, category, links and attachment
hashes. An approval pins one revision by that hash; an edit after approval returns the item to draft,
so the new text needs its own approval. Nobody approves text they wrote: an approver who wrote any
revision since the item's last approval (or since it was created) may not approve it, however small the
later edits of others (a title changed by someone else does not make the body's author a second pair of
eyes). A scoped user sees the content written or approved by someone scoped inside their subtree, and
the content dispatched into it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.directory import audit
from broadcaster.directory.users import Actor, Permission, scope_units
from broadcaster.domain.errors import InputError, NotFound, PermissionDenied, WorkflowError
from broadcaster.domain.models import (
    Approval,
    ContentItem,
    ContentRevision,
    Delivery,
    Dispatch,
    RevisionAttachment,
    User,
    pk,
)
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import ApprovalDecision, ContentStatus
from broadcaster.domain.timeutil import today as local_today
from broadcaster.editorial import attachments
from broadcaster.storage.csvio import nfc
from broadcaster.units.naming import fold
from broadcaster.units.tree import load_tree
from content.markdown import URL_PATTERN, parse

CATEGORIES = ("chính quyền số", "kinh tế số", "xã hội số", "giáo dục số")
_CATEGORY_KEYS = {fold(c).replace(" ", "-"): c for c in CATEGORIES} | {fold(c): c for c in CATEGORIES}
MAX_TITLE = 200
MAX_BODY = 50_000
# state -> action -> next state
TRANSITIONS: dict[str, dict[str, str]] = {
    ContentStatus.DRAFT: {"submit": ContentStatus.SUBMITTED, "archive": ContentStatus.ARCHIVED},
    ContentStatus.SUBMITTED: {
        "approve": ContentStatus.APPROVED,
        "reject": ContentStatus.REJECTED,
        "archive": ContentStatus.ARCHIVED,
    },
    ContentStatus.APPROVED: {"archive": ContentStatus.ARCHIVED},
    ContentStatus.REJECTED: {"submit": ContentStatus.SUBMITTED, "archive": ContentStatus.ARCHIVED},
    ContentStatus.ARCHIVED: {},
}


def normalise_category(text: str) -> str:
    """One of the four standard categories (matched loosely), or a custom one as written."""
    value = nfc(text)
    if not value:
        raise InputError("empty category")
    if len(value) > 64:
        raise InputError("a category is at most 64 characters")
    return _CATEGORY_KEYS.get(fold(value), value)


def revision_hash(
    title: str, body: str, category: str, links: Sequence[str], attachment_hashes: Sequence[str]
) -> str:
    canonical = json.dumps(
        {
            "title": title,
            "body": body,
            "category": category,
            "links": list(links),
            "attachments": list(attachment_hashes),
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_text(title: str, body: str, links: Sequence[str]) -> None:
    if not title:
        raise InputError("empty title")
    if len(title) > MAX_TITLE:
        raise InputError(f"a title is at most {MAX_TITLE} characters")
    if not body.strip():
        raise InputError("empty body")
    if len(body) > MAX_BODY:
        raise InputError(f"a body is at most {MAX_BODY:,} characters")
    parse(body)
    for link in links:
        if not URL_PATTERN.fullmatch(link):
            raise InputError(f"link {link!r} must be an http(s) URL")


async def _add_revision(
    session: AsyncSession,
    actor: Actor,
    item: ContentItem,
    number: int,
    title: str,
    body: str,
    category: str,
    links: list[str],
    files: Sequence[Path],
    max_bytes: int,
    keep: Sequence[str] = (),
) -> ContentRevision:
    stored = [await attachments.store(session, f, max_bytes) for f in files]
    hashes = list(dict.fromkeys([*keep, *(a.sha256 for a in stored)]))
    revision = ContentRevision(
        content_id=pk(item.id),
        number=number,
        title=title,
        body=body,
        category=category,
        links=links,
        attachments=hashes,
        sha256=revision_hash(title, body, category, links, hashes),
        author_id=actor.id,
    )
    session.add(revision)
    await session.flush()
    if hashes:
        await session.execute(
            insert(RevisionAttachment),
            [{"revision_id": revision.id, "sha256": h, "position": i} for i, h in enumerate(hashes)],
        )
    return revision


async def create(
    session: AsyncSession,
    actor: Actor,
    *,
    title: str,
    body: str,
    category: str,
    links: Sequence[str] = (),
    files: Sequence[Path] = (),
    max_bytes: int,
) -> tuple[ContentItem, ContentRevision]:
    actor.require(Permission.WRITE_CONTENT)
    title, body, category = nfc(title), nfc(body), normalise_category(category)
    links = [link.strip() for link in links]
    _check_text(title, body, links)
    item = ContentItem(author_id=actor.id)
    session.add(item)
    await session.flush()
    revision = await _add_revision(session, actor, item, 1, title, body, category, links, files, max_bytes)
    await audit.record(
        session,
        actor.name,
        "content.new",
        "content",
        item.id,
        after={"revision": 1, "sha256": revision.sha256, "title": title},
    )
    return item, revision


async def get(session: AsyncSession, content_id: int) -> ContentItem:
    item = await session.get(ContentItem, content_id)
    if item is None:
        raise NotFound(f"unknown content {content_id}")
    return item


async def latest_revision(session: AsyncSession, item: ContentItem) -> ContentRevision:
    return (
        await session.execute(
            select(ContentRevision).where(
                col(ContentRevision.content_id) == item.id,
                col(ContentRevision.number) == item.latest_revision,
            )
        )
    ).scalar_one()


async def edit(
    session: AsyncSession,
    actor: Actor,
    content_id: int,
    *,
    title: str | None = None,
    body: str | None = None,
    category: str | None = None,
    links: Sequence[str] | None = None,
    files: Sequence[Path] = (),
    drop_attachments: bool = False,
    max_bytes: int,
) -> ContentRevision:
    """Add a revision; an item that was submitted or approved goes back to draft."""
    actor.require(Permission.WRITE_CONTENT)
    item = await get(session, content_id)
    if item.status == ContentStatus.ARCHIVED:
        raise WorkflowError(f"content {content_id} is archived")
    current = await latest_revision(session, item)
    new_title = nfc(title) if title is not None else current.title
    new_body = nfc(body) if body is not None else current.body
    new_category = normalise_category(category) if category is not None else current.category
    new_links = [link.strip() for link in links] if links is not None else list(current.links)
    _check_text(new_title, new_body, new_links)
    keep = [] if drop_attachments else list(current.attachments)
    revision = await _add_revision(
        session,
        actor,
        item,
        item.latest_revision + 1,
        new_title,
        new_body,
        new_category,
        new_links,
        files,
        max_bytes,
        keep,
    )
    if revision.sha256 == current.sha256:
        raise WorkflowError(f"content {content_id}: nothing changed")
    before = {
        "status": item.status,
        "revision": item.latest_revision,
        "approved_revision": item.approved_revision,
    }
    item.latest_revision = revision.number
    item.status = ContentStatus.DRAFT
    item.approved_revision = None
    item.updated_at = utcnow()
    await audit.record(
        session,
        actor.name,
        "content.edit",
        "content",
        content_id,
        before=before,
        after={"status": ContentStatus.DRAFT, "revision": revision.number, "sha256": revision.sha256},
    )
    return revision


async def _transition(session: AsyncSession, actor: Actor, item: ContentItem, action: str) -> str:
    allowed = TRANSITIONS[item.status]
    if action not in allowed:
        raise WorkflowError(
            f"content {item.id} is {item.status}; it cannot be {action}ed here"
            + (f" (possible: {', '.join(allowed)})" if allowed else "")
        )
    before = item.status
    item.status = allowed[action]
    item.updated_at = utcnow()
    return before


async def submit(session: AsyncSession, actor: Actor, content_id: int) -> ContentItem:
    actor.require(Permission.WRITE_CONTENT)
    item = await get(session, content_id)
    before = await _transition(session, actor, item, "submit")
    await audit.record(
        session,
        actor.name,
        "content.submit",
        "content",
        content_id,
        before={"status": before},
        after={"status": item.status, "revision": item.latest_revision},
    )
    return item


async def approve(
    session: AsyncSession, actor: Actor, content_id: int, revision_number: int | None = None
) -> Approval:
    actor.require(Permission.APPROVE_CONTENT)
    item = await get(session, content_id)
    if revision_number is not None and revision_number != item.latest_revision:
        raise WorkflowError(
            f"content {content_id}: revision {revision_number} is not the latest ({item.latest_revision})"
        )
    revision = await latest_revision(session, item)
    await _require_fresh_eyes(session, actor, item)
    recomputed = revision_hash(
        revision.title, revision.body, revision.category, revision.links, revision.attachments
    )
    if recomputed != revision.sha256:
        raise WorkflowError(f"content {content_id}: revision {revision.number} does not match its hash")
    parse(revision.body)  # template variables and syntax are settled here, never at send time
    before = await _transition(session, actor, item, "approve")
    item.approved_revision = revision.number
    approval = Approval(
        content_id=content_id,
        revision_id=pk(revision.id),
        revision_sha256=revision.sha256,
        decision=ApprovalDecision.APPROVED,
        user_id=actor.id,
    )
    session.add(approval)
    await session.flush()
    await audit.record(
        session,
        actor.name,
        "content.approve",
        "content",
        content_id,
        before={"status": before},
        after={"status": item.status, "revision": revision.number, "sha256": revision.sha256},
    )
    return approval


async def _require_fresh_eyes(session: AsyncSession, actor: Actor, item: ContentItem) -> None:
    """Four eyes: refuse the approval when ``actor`` wrote any revision since the item's last approval
    (or since it was created): the text to approve is all that was written since, not only the latest
    revision's change."""
    last = (
        await session.execute(
            select(col(ContentRevision.number))
            .join(Approval, col(Approval.revision_id) == col(ContentRevision.id))
            .where(col(Approval.content_id) == item.id, col(Approval.decision) == ApprovalDecision.APPROVED)
            .order_by(col(Approval.id).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    mine = (
        (
            await session.execute(
                select(col(ContentRevision.number))
                .where(
                    col(ContentRevision.content_id) == item.id,
                    col(ContentRevision.number) > (last or 0),
                    col(ContentRevision.author_id) == actor.id,
                )
                .order_by(col(ContentRevision.number))
            )
        )
        .scalars()
        .all()
    )
    if mine:
        which = f"revision {mine[0]}" if len(mine) == 1 else f"revisions {', '.join(map(str, mine))}"
        since = f"since its last approval (revision {last})" if last is not None else "since it was created"
        raise PermissionDenied(
            f"user {actor.name} wrote {which} of content {item.id} {since} and may not approve it"
        )


async def reject(session: AsyncSession, actor: Actor, content_id: int, reason: str) -> Approval:
    actor.require(Permission.APPROVE_CONTENT)
    reason = nfc(reason)
    if not reason:
        raise InputError("a rejection needs a reason (--reason)")
    item = await get(session, content_id)
    revision = await latest_revision(session, item)
    before = await _transition(session, actor, item, "reject")
    decision = Approval(
        content_id=content_id,
        revision_id=pk(revision.id),
        revision_sha256=revision.sha256,
        decision=ApprovalDecision.REJECTED,
        reason=reason,
        user_id=actor.id,
    )
    session.add(decision)
    await session.flush()
    await audit.record(
        session,
        actor.name,
        "content.reject",
        "content",
        content_id,
        before={"status": before},
        after={"status": item.status, "revision": revision.number, "reason": reason},
    )
    return decision


async def archive(session: AsyncSession, actor: Actor, content_id: int) -> ContentItem:
    actor.require(Permission.WRITE_CONTENT)
    item = await get(session, content_id)
    before = await _transition(session, actor, item, "archive")
    await audit.record(
        session,
        actor.name,
        "content.archive",
        "content",
        content_id,
        before={"status": before},
        after={"status": item.status},
    )
    return item


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    number: int
    title: str
    body: str
    category: str
    links: tuple[str, ...]
    attachments: tuple[str, ...]  # SHA-256 of each attached file
    sha256: str
    author: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DecisionInfo:
    """An approval or rejection of one revision."""

    decision: str
    revision: int | None
    sha256: str
    by: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ContentDetail:
    """``cns content show``, ``GET /api/content/{id}``: an item with its revisions and decisions."""

    id: int
    status: str
    author: str | None
    latest_revision: int
    approved_revision: int | None
    revisions: tuple[RevisionInfo, ...]
    decisions: tuple[DecisionInfo, ...]


@dataclass(frozen=True, slots=True)
class ContentSummary:
    """``cns content list``, ``GET /api/content``: an item and its latest revision's title."""

    id: int
    status: str
    title: str
    category: str
    revision: int
    approved_revision: int | None


@dataclass(frozen=True, slots=True)
class RevisionSaved:
    """``cns content new|edit``: the item's new revision (the item is a draft again)."""

    id: int
    status: str
    revision: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ContentState:
    """``cns content submit|archive``: where the item is now."""

    id: int
    status: str
    revision: int

    @classmethod
    def of(cls, item: ContentItem) -> ContentState:
        return cls(pk(item.id), item.status, item.latest_revision)


@dataclass(frozen=True, slots=True)
class Approved:
    """``cns content approve``: the approved revision's hash and the approver."""

    id: int
    status: str
    sha256: str
    by: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """``cns content reject``."""

    id: int
    status: str
    reason: str


async def visible_content(
    session: AsyncSession, actor: Actor, today: date, among: Collection[int] | None = None
) -> set[int] | None:
    """The content ``actor`` may see (of ``among``, when given): None for an unscoped user (all of it);
    for a scoped one, the content written (any revision) or approved by a user scoped inside their
    subtree, and the content whose dispatches reached a unit inside it (on ``today``'s tree)."""
    actor.require(Permission.VIEW)
    inside = await scope_units(session, actor, await load_tree(session, today))
    if inside is None:
        return None
    people = [
        uid
        for uid, scope in await session.execute(select(col(User.id), col(User.scope_unit_id)))
        if scope in inside
    ]
    only = sorted(among) if among is not None else None
    visible: set[int] = set()
    for start in range(0, len(people), 500):
        chunk = people[start : start + 500]
        wrote = select(col(ContentRevision.content_id)).where(col(ContentRevision.author_id).in_(chunk))
        approved = select(col(Approval.content_id)).where(
            col(Approval.user_id).in_(chunk), col(Approval.decision) == ApprovalDecision.APPROVED
        )
        if only is not None:
            wrote = wrote.where(col(ContentRevision.content_id).in_(only))
            approved = approved.where(col(Approval.content_id).in_(only))
        visible.update((await session.execute(wrote.distinct())).scalars())
        visible.update((await session.execute(approved.distinct())).scalars())
    units = sorted(inside)
    for start in range(0, len(units), 500):
        reached = (
            select(col(Dispatch.content_id))
            .join(Delivery, col(Delivery.dispatch_id) == col(Dispatch.id))
            .where(col(Delivery.unit_id).in_(units[start : start + 500]))
        )
        if only is not None:
            reached = reached.where(col(Dispatch.content_id).in_(only))
        visible.update((await session.execute(reached.distinct())).scalars())
    return visible


async def show(
    session: AsyncSession, content_id: int, *, actor: Actor | None = None, today: date | None = None
) -> ContentDetail:
    """An item with its revisions and decisions; with ``actor``, only content they may see (see
    :func:`visible_content`)."""
    item = await get(session, content_id)
    if actor is not None:
        visible = await visible_content(session, actor, today or local_today(), [content_id])
        if visible is not None and content_id not in visible:
            raise PermissionDenied(
                f"content {content_id} is outside user {actor.name}'s scope {actor.scope_code}: nobody "
                "scoped there wrote or approved it, and it was not dispatched there"
            )
    names = dict((await session.execute(select(col(User.id), col(User.name)))).all())
    revisions = (
        await session.execute(
            select(ContentRevision)
            .where(col(ContentRevision.content_id) == content_id)
            .order_by(col(ContentRevision.number))
        )
    ).scalars()
    decisions = (
        await session.execute(
            select(Approval).where(col(Approval.content_id) == content_id).order_by(col(Approval.id))
        )
    ).scalars()
    rev_numbers: dict[int | None, int] = {}
    out_revisions = []
    for r in revisions:
        rev_numbers[r.id] = r.number
        out_revisions.append(
            RevisionInfo(
                r.number,
                r.title,
                r.body,
                r.category,
                tuple(r.links),
                tuple(r.attachments),
                r.sha256,
                names.get(r.author_id),
                r.created_at,
            )
        )
    return ContentDetail(
        pk(item.id),
        item.status,
        names.get(item.author_id),
        item.latest_revision,
        item.approved_revision,
        tuple(out_revisions),
        tuple(
            DecisionInfo(
                d.decision,
                rev_numbers.get(d.revision_id),
                d.revision_sha256,
                names.get(d.user_id),
                d.reason,
                d.at,
            )
            for d in decisions
        ),
    )


async def list_items(
    session: AsyncSession,
    status: str | None = None,
    *,
    actor: Actor | None = None,
    today: date | None = None,
) -> list[ContentSummary]:
    """Content items with their latest revision's title; with ``actor``, only those they may see (see
    :func:`visible_content`)."""
    query = (
        select(ContentItem, ContentRevision)
        .join(
            ContentRevision,
            (col(ContentRevision.content_id) == col(ContentItem.id))
            & (col(ContentRevision.number) == col(ContentItem.latest_revision)),
        )
        .order_by(col(ContentItem.id))
    )
    if status:
        if status not in TRANSITIONS:
            raise InputError(f"unknown status {status!r} (statuses: {', '.join(TRANSITIONS)})")
        query = query.where(col(ContentItem.status) == status)
    visible = None if actor is None else await visible_content(session, actor, today or local_today())
    return [
        ContentSummary(pk(item.id), item.status, rev.title, rev.category, rev.number, item.approved_revision)
        for item, rev in (await session.execute(query))
        if visible is None or item.id in visible
    ]
