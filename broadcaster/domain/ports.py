"""Ports between the core and the platform adapters and renderers.

A renderer (``content.render``) turns an approved revision into a :class:`RenderedMessage` for one
target on one platform; a :class:`Sender` (``adapters.*``) moves it over the wire and reports a
:class:`SendResult` or raises one of the :class:`broadcaster.domain.errors.DeliveryError` subclasses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from broadcaster.domain.states import GroupMode

ADMIN_ACTIVE, ADMIN_UNREACHABLE = "active", "unreachable"  # a relay admin's status (chat_group.admins)


@dataclass(frozen=True, slots=True)
class Admin:
    """A relay group's admin: who forwards the posts into the group, reached through ``channel``."""

    name: str
    channel: str
    address: str
    status: str = ADMIN_ACTIVE  # ADMIN_UNREACHABLE once their channel said they are gone (unfollowed...)

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.address}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where one delivery goes: a group/page/endpoint on a platform, with its unit's names."""

    platform: str
    external_id: str
    title: str = ""
    mode: str = GroupMode.DIRECT
    kind: str = "group"  # group | user (a follower or an admin reached one to one, as relay does)
    admins: tuple[Admin, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)  # unit_name, commune, district, province
    reminder: int = 0  # relay: how many times the admins were already asked (0 = the first request)
    # The ids of this delivery's messages an earlier attempt already sent, in order: a post of several
    # messages (parts, media, a relay package) resumes after them instead of sending them twice.
    sent: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Media:
    """An attachment, with its bytes (uploaded where the platform takes files) and a link (elsewhere)."""

    sha256: str
    filename: str
    media_type: str
    data: bytes
    url: str | None = None

    @property
    def kind(self) -> str:
        if self.media_type.startswith("image/"):
            return "photo"
        if self.media_type.startswith("video/"):
            return "video"
        return "document"


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A post rendered for one platform and one target.

    ``parts`` are the text messages in order (already split to the platform's limit and numbered);
    ``fmt`` tells how they are formatted ("html" or "plain"); ``plain_parts`` are always plain text
    (the webhook channel carries both); ``media`` go as photo/document/album where supported.
    """

    parts: tuple[str, ...]
    fmt: str
    plain_parts: tuple[str, ...]
    media: tuple[Media, ...] = ()
    link: str | None = None
    title: str = ""
    caption: str | None = None  # the whole text when it fits a media caption (Telegram: 1024)
    # For an edit: the sent message's media stay as they are and only its text or caption changes (the
    # new revision has the same attachments); False replaces the media too.
    keep_media: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the platform gave back: the ids of every message it created, in order."""

    message_ids: tuple[str, ...]
    accepted_only: bool = False  # accepted but not yet posted (Telegram scheduled video, webhook 202)
    gone_admins: tuple[str, ...] = ()  # relay: admins (``channel:address``) their channel says are gone


@dataclass(frozen=True, slots=True)
class OAuthTokens:
    """A rotating OAuth pair (Zalo: access 25 h, refresh single-use for 3 months)."""

    access_token: str
    refresh_token: str
    expires_at: float  # unix seconds

    def __repr__(self) -> str:
        return f"OAuthTokens(expires_at={self.expires_at})"  # never the tokens themselves


class TokenStore(Protocol):
    """Durable, exclusive storage of one account's rotating tokens.

    ``rotate`` runs ``exchange(current)`` while holding an exclusive lock (across processes), unless the
    stored access token is no longer ``stale`` (another worker refreshed first), and
    persists what it returns atomically before releasing the lock and before anyone uses it, so a
    single-use refresh token is never spent twice and a new one is never lost in memory.
    """

    async def load(self) -> OAuthTokens | None: ...

    async def rotate(
        self, stale: str, exchange: Callable[[OAuthTokens], Awaitable[OAuthTokens]]
    ) -> OAuthTokens: ...


@runtime_checkable
class Sender(Protocol):
    """One platform account. Every method raises only :class:`broadcaster.domain.errors.DeliveryError`s."""

    platform: str

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        """Post ``message`` to ``target``; ``key`` is the delivery's idempotency key. The messages in
        ``target.sent`` are not sent again (the result's ids start with them); an error after some
        messages went out carries their ids in ``sent_ids``."""
        ...

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        """Correct a sent message in place; PermanentError where the platform cannot edit."""
        ...

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        """Take messages back (recall); a message already gone counts as deleted (a recall run again is
        harmless). NotSupported where the platform cannot delete."""
        ...

    async def member_count(self, target: Target) -> int | None:
        """Members of the target, or None when the platform does not say (unknown is not 0)."""
        ...

    async def close(self) -> None: ...


SIGNAL_KINDS = (
    "reply",  # a person answered one of our messages (or commented on our Page post)
    "reaction",  # a person reacted; count +1, -1 when taken back, 0 when changed
    "reaction_count",  # an anonymous total for a message (Telegram channels)
    "read",  # a cumulative read count reported by a bridge
    "members",  # the group's member count now
    "bot_removed",  # our bot / OA is no longer in the group
    "bot_added",  # our bot / OA was added to a group
    "migrated",  # the group moved to a new id (``value``)
)


@dataclass(frozen=True, slots=True)
class Signal:
    """One thing a platform told us through its webhook, in platform-neutral terms.

    ``chat_id`` is the platform's id of the group (page, endpoint); ``message_id`` the id of our message
    it refers to; ``delivery_key`` our own delivery key where the platform echoes it (signed webhooks);
    ``user_id`` the platform's id of the person (pseudonymised before it is stored).
    """

    kind: str
    chat_id: str | None = None
    message_id: str | None = None
    delivery_key: str | None = None
    user_id: str | None = None
    text: str | None = None
    value: str | None = None
    count: int = 1
    external_id: str | None = None
    title: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    """A platform's own view of the webhook it calls (Telegram's getWebhookInfo): the URL ("" when
    none), the updates waiting, which ones it sends, and the last delivery error it saw."""

    url: str
    pending_update_count: int
    allowed_updates: tuple[str, ...]
    last_error_date: datetime | None
    last_error_message: str | None


class HookCodec(Protocol):
    """How one platform's webhook requests are authenticated and read (each adapter has one)."""

    platform: str

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, settings: Mapping[str, Any], now: float
    ) -> str:
        """Check the request; return its event key (for de-duplication). Raise ``BadSignature`` or
        ``BadPayload``; never anything else."""
        ...

    def parse(self, body: bytes) -> list[Signal]:
        """What a verified body says (an empty list: nothing we use). Raise ``BadPayload`` only."""
        ...

    def challenge(self, query: Mapping[str, str], verify_token: str) -> str | None:
        """A subscription handshake by GET (Meta's ``hub.challenge``): the text to echo, or None (403).
        Platforms without one always answer None."""
        ...
