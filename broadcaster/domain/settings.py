"""Settings read from the environment, once, at the composition root (never at import time)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from broadcaster.domain.errors import ConfigError

_N = TypeVar("_N", int, float)

DEFAULT_DATABASE_URL = "sqlite:///./cns.db"
DEFAULT_ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide settings. Every field has an environment variable (see the README), except
    ``stored_link_key``: the key ``cns init`` stored with the database, read when the database is opened."""

    database_url: str = DEFAULT_DATABASE_URL
    user: str | None = None
    secrets_file: Path | None = None
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES
    token_dir: Path = Path("cns-tokens")  # rotating OAuth tokens (Zalo), one 0600 file per account
    public_url: str = "http://127.0.0.1:8080"  # where `cns serve` is reached: links, confirmations
    link_secret: str = ""  # keys the confirmation links (CNS_LINK_SECRET); else stored_link_key
    stored_link_key: str = ""  # the random key `cns init` stored with the database (not from the environment)
    pseudonym_key: str = ""  # keys the hash of citizens' platform ids (CNS_PSEUDONYM_KEY); else link_secret
    raw_retention_days: int = 30  # raw webhook bodies are purged after this many days
    hook_max_bytes: int = 1024 * 1024  # larger webhook bodies get 413
    confirm_remind_hours: float = 24.0  # relay: remind the admins when not confirmed after this
    confirm_escalate_hours: float = 48.0  # relay: tell the commune team after this
    reach_interval_hours: float = 24.0  # member counts are polled this often per group
    report_post_hour: int | None = None  # local hour on the 1st to post last month's summary (None: off)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        secrets = env.get("CNS_SECRETS_FILE")
        max_bytes = env.get("CNS_ATTACHMENT_MAX_BYTES")
        return cls(
            database_url=env.get("CNS_DATABASE_URL") or DEFAULT_DATABASE_URL,
            user=env.get("CNS_USER") or None,
            secrets_file=Path(secrets) if secrets else None,
            attachment_max_bytes=int(max_bytes) if max_bytes else DEFAULT_ATTACHMENT_MAX_BYTES,
            token_dir=Path(env.get("CNS_TOKEN_DIR") or "cns-tokens"),
            public_url=env.get("CNS_PUBLIC_URL") or "http://127.0.0.1:8080",
            link_secret=env.get("CNS_LINK_SECRET") or "",
            pseudonym_key=env.get("CNS_PSEUDONYM_KEY") or "",
            raw_retention_days=_number(env, "CNS_RAW_RETENTION_DAYS", 30, int),
            hook_max_bytes=_number(env, "CNS_HOOK_MAX_BYTES", 1024 * 1024, int),
            confirm_remind_hours=_number(env, "CNS_CONFIRM_REMIND_HOURS", 24.0, float),
            confirm_escalate_hours=_number(env, "CNS_CONFIRM_ESCALATE_HOURS", 48.0, float),
            reach_interval_hours=_number(env, "CNS_REACH_INTERVAL_HOURS", 24.0, float),
            report_post_hour=_hour(env, "CNS_REPORT_POST_HOUR"),
        )

    def key_for_links(self) -> bytes:
        """Keys tracked-link codes and relay confirmation tokens: CNS_LINK_SECRET, else the random key
        ``cns init`` stored with the database, else (a database without one) a fallback anyone who knows
        the database URL can compute, which ``cns serve`` refuses on a public address."""
        return (self.link_secret or self.stored_link_key).encode() or self.legacy_link_key()

    @property
    def link_key_is_guessable(self) -> bool:
        """No CNS_LINK_SECRET and no key stored with the database: links and confirmations are forgeable."""
        return not (self.link_secret or self.stored_link_key)

    def legacy_link_key(self) -> bytes:
        """The fallback key (derived from the database URL) that keyed links and pseudonyms before a key
        was stored with the database: privacy requests still look for what was pseudonymised with it."""
        return f"unset:{self.database_url}".encode()

    def key_for_pseudonyms(self) -> bytes:
        return self.pseudonym_key.encode() if self.pseudonym_key else self.key_for_links()

    @property
    def public_url_is_local(self) -> bool:
        """Whether CNS_PUBLIC_URL names this machine only (localhost, a loopback address)."""
        return is_loopback_host(urlsplit(self.public_url).hostname or "")


def is_loopback_host(host: str) -> bool:
    """``localhost`` (or a name under ``.localhost``) or a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hour(env: Mapping[str, str], name: str) -> int | None:
    raw = (env.get(name) or "").strip().lower()
    if raw in {"", "off", "no", "false"}:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} is an hour 0-23 (local time) or 'off', not {raw!r}") from None
    if not 0 <= value <= 23:
        raise ConfigError(f"{name} is an hour 0-23 (local time) or 'off', not {raw!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: _N, kind: type[_N]) -> _N:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value
