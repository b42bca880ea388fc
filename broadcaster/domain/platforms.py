"""What the core knows of each platform, as data: its name, default limits, what it can edit or
delete, the settings an account needs and where its webhook is registered.

The adapters' half of the registry (``adapters.registry``: each platform's adapter factory and webhook
reader) is keyed by the same names, and a test holds both halves to the same set. The core reads the
facts here; only bootstrap reads the adapters' half.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from broadcaster.domain.errors import InputError


@dataclass(frozen=True, slots=True)
class PlatformFacts:
    name: str
    # Documented limits (shared/reference/platforms.md); each can be overridden per account with the
    # settings ``rate_per_second`` and ``group_rate_per_minute``.
    account_rate: float  # messages per second for one account (bot, OA, Page, endpoint)
    group_rate_per_minute: float | None  # messages per minute into one group, when the platform has one
    can_edit: bool  # a sent message can be edited in place (else a correction is posted)
    can_delete: bool  # a sent message can be deleted by us (else the group's admins remove it)
    required_settings: tuple[str, ...] = ()  # account settings without which no send can work
    # Where a person registers the ``cns serve`` webhook; empty when we register it through the API.
    hook_setup: str = ""
    whsec_secret: bool = False  # the account's secret is a Standard Webhooks ``whsec_`` key


_FACTS = (
    PlatformFacts("telegram", account_rate=30.0, group_rate_per_minute=20.0, can_edit=True, can_delete=True),
    PlatformFacts(
        "zalo",
        account_rate=20.0,
        group_rate_per_minute=None,
        can_edit=False,
        can_delete=False,
        required_settings=("app_id",),
        hook_setup="Zalo for Developers > your app > Webhook: set this URL and enable the OA events "
        "(user_send_text, user_reacted_message, ...); requests are signed with the OA secret key, "
        "which must be this account's 'hook' secret",
    ),
    PlatformFacts(
        "facebook",
        account_rate=5.0,
        group_rate_per_minute=None,
        can_edit=True,
        can_delete=True,
        hook_setup="Meta app dashboard > Webhooks > Page: callback URL = this URL, verify token = this "
        "account's 'verify_token' secret (answered by GET), fields: feed; requests are signed with the "
        "app secret, which must be this account's 'hook' secret",
    ),
    PlatformFacts(
        "webhook",
        account_rate=50.0,
        group_rate_per_minute=None,
        can_edit=True,
        can_delete=True,
        required_settings=("base_url",),
        whsec_secret=True,
        hook_setup="give the bridge this URL and this account's 'hook' secret "
        "(a whsec_ key, Standard Webhooks)",
    ),
)
FACTS: Mapping[str, PlatformFacts] = MappingProxyType({f.name: f for f in _FACTS})
PLATFORMS: tuple[str, ...] = tuple(FACTS)


def platform_facts(name: str) -> PlatformFacts:
    """The facts of ``name`` (case and spaces ignored), or an ``InputError`` naming the platforms."""
    facts = FACTS.get(name.strip().lower())
    if facts is None:
        raise InputError(f"unknown platform {name!r} (platforms: {', '.join(PLATFORMS)})")
    return facts
