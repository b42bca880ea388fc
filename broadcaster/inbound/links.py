"""Tracked links and relay confirmation tokens, both served by ``cns serve``.

A tracked link ``/l/{code}`` names one delivery and one of the post's links: ``code`` is the delivery id
(hex), six hex digits of the URL's SHA-256 and a MAC over both keyed by ``CNS_LINK_SECRET``, so codes
cannot be forged or enumerated and no table of links is needed. A click is recorded once per visitor
and delivery (repeats are kept with count 0) and link-preview robots (which fetch every link posted in
a chat) are not counted at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import ChatGroup, ContentRevision, Delivery, Dispatch, Interaction
from broadcaster.domain.settings import Settings
from broadcaster.domain.sqltypes import utcnow
from broadcaster.domain.states import DeliveryState

_CODE = re.compile(r"^([0-9a-f]{1,10})-([0-9a-f]{6})-([A-Za-z0-9_-]{11})$")
_TOKEN = re.compile(r"^delivery-(\d{1,12})\.([A-Za-z0-9_=-]{16})$")
# Robots that fetch a link to draw its preview when it is posted (Zalo, Facebook, Telegram...), crawlers.
PREVIEW_AGENTS = re.compile(
    r"bot|crawl|spider|preview|facebookexternalhit|facebookcatalog|meta-externalagent|zalo|"
    r"telegrambot|whatsapp|skype|slack|discord|embedly|curl/|wget/|python-|go-http|okhttp|headless",
    re.IGNORECASE,
)


def _mac(secret: bytes, payload: str, size: int) -> str:
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:size]).decode().rstrip("=")


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:6]


def link_code(secret: bytes, delivery_id: int, url: str) -> str:
    payload = f"{delivery_id:x}-{url_hash(url)}"
    return f"{payload}-{_mac(secret, payload, 8)}"


def parse_link_code(secret: bytes, code: str) -> tuple[int, str] | None:
    match = _CODE.match(code)
    if match is None:
        return None
    payload = f"{match.group(1)}-{match.group(2)}"
    if not hmac.compare_digest(_mac(secret, payload, 8), match.group(3)):
        return None
    return int(match.group(1), 16), match.group(2)


def parse_confirmation(token: str, expected: str) -> int | None:
    """The delivery id of a relay confirmation token, if ``expected`` (the token we issued) matches."""
    match = _TOKEN.match(token)
    if match is None or not hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return int(match.group(1))


@dataclass(frozen=True, slots=True)
class Click:
    delivery: Delivery
    url: str


async def resolve_link(
    s: AsyncSession, delivery_id: int, hashed: str, links_of: Callable[[ContentRevision], list[str]]
) -> Click | None:
    """The delivery and URL a code names; ``links_of`` lists a revision's links (content.render)."""
    row = (
        await s.execute(
            select(Delivery, ContentRevision)
            .join(Dispatch, col(Dispatch.id) == col(Delivery.dispatch_id))
            .join(ContentRevision, col(ContentRevision.id) == col(Dispatch.revision_id))
            .where(col(Delivery.id) == delivery_id)
        )
    ).first()
    if row is None:
        return None
    delivery, revision = row
    url = next((u for u in links_of(revision) if url_hash(u) == hashed), None)
    return Click(delivery, url) if url else None


async def record_click(s: AsyncSession, click: Click, visitor: str, user_agent: str) -> str:
    """Store a click; returns ``click``, ``repeat`` or ``preview`` (a robot: not stored)."""
    if not user_agent or PREVIEW_AGENTS.search(user_agent):
        return "preview"
    seen = (
        await s.execute(
            select(col(Interaction.id))
            .where(
                col(Interaction.delivery_id) == click.delivery.id,
                col(Interaction.kind) == "click",
                col(Interaction.actor_hash) == visitor,
            )
            .limit(1)
        )
    ).first()
    await _record(
        s, click.delivery, "click", actor_hash=visitor, value=click.url[:64], count=0 if seen else 1
    )
    return "repeat" if seen else "click"


async def confirm_delivery(s: AsyncSession, delivery_id: int) -> str:
    """A relay admin says the post is in the group: ``confirmed``, ``already`` or why it cannot be."""
    delivery = await s.get(Delivery, delivery_id)
    if delivery is None:
        return "unknown"
    if delivery.state == DeliveryState.CONFIRMED:
        return "already"
    if delivery.state != DeliveryState.AWAITING_CONFIRMATION:
        return delivery.state
    now = utcnow()
    delivery.state, delivery.confirmed_at, delivery.updated_at = DeliveryState.CONFIRMED, now, now
    await _record(s, delivery, "confirmation")
    return DeliveryState.CONFIRMED


async def _record(s: AsyncSession, delivery: Delivery, kind: str, **fields: Any) -> None:
    """An interaction with one delivery, placed on its group, unit and dispatch."""
    group = await s.get(ChatGroup, delivery.group_id)
    s.add(
        Interaction(
            kind=kind,
            at=utcnow(),
            platform=delivery.platform,
            account_id=group.account_id if group else None,
            group_id=delivery.group_id,
            unit_id=delivery.unit_id,
            delivery_id=delivery.id,
            dispatch_id=delivery.dispatch_id,
            **fields,
        )
    )


def confirmation_token(settings: Settings, key: str) -> str:
    """An unguessable token for a relay confirmation link (``/r/{token}``), checked by ``cns serve``."""
    digest = hmac.new(settings.key_for_links(), key.encode(), hashlib.sha256).digest()
    return f"{key}.{base64.urlsafe_b64encode(digest[:12]).decode()}"


def link_tracker(settings: Settings) -> Callable[[int], Callable[[str], str]]:
    """Per delivery, each link of the post becomes ``{CNS_PUBLIC_URL}/l/{code}`` (``cns serve``)."""
    base, secret = settings.public_url.rstrip("/"), settings.key_for_links()

    def for_delivery(delivery_id: int) -> Callable[[str], str]:
        return lambda url: f"{base}/l/{link_code(secret, delivery_id, url)}"

    return for_delivery
