"""Secret references: accounts store ``env:NAME`` or ``file:KEY``, never a secret itself.

``file:KEY`` reads KEY from the secrets file named by ``CNS_SECRETS_FILE`` (JSON or TOML object).
Values are wrapped in :class:`Secret`, whose ``repr`` and ``str`` never show them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from broadcaster.domain.errors import ConfigError, InputError

REDACTED = "***"
_SECRET_WORDS = ("token", "secret", "password", "passwd", "apikey", "api_key", "signature", "credential")
# Values that look like real credentials, refused wherever plain settings are accepted.
_CREDENTIAL_PATTERNS = (
    re.compile(r"(?<![0-9])\d{6,12}:[A-Za-z0-9_-]{30,}"),  # Telegram bot token (also inside "./bot<token>")
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]{16,}"),  # Standard Webhooks secret
    re.compile(r"\bEAA[A-Za-z0-9]{40,}"),  # Facebook access token
)
_REF = re.compile(r"^(env|file):([A-Za-z_][A-Za-z0-9_.-]{0,127})$")


WHSEC_PREFIX = "whsec_"


def whsec_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks ``whsec_`` secret. Its base64 may leave out the ``=`` padding
    (the reference library accepts that, so bridges hand such secrets out); one that cannot be decoded at
    all, or is empty, is a ``ConfigError``: the account cannot sign anything, and retrying will not help."""
    raw = secret.removeprefix(WHSEC_PREFIX).strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except ValueError:
        key = b""
    if not key:
        raise ConfigError("the webhook secret must be whsec_ followed by base64 (a key of at least one byte)")
    return key


class Secret:
    """A secret value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    __str__ = __repr__


def parse_ref(ref: str) -> tuple[str, str]:
    match = _REF.match(ref.strip())
    if match is None:
        raise InputError(
            "a secret must be given as a reference, env:VARIABLE or file:KEY (from CNS_SECRETS_FILE); "
            "secrets are never stored in the database"
        )
    return match.group(1), match.group(2)


def _load_file(path: Path) -> Mapping[str, Any]:
    try:
        raw = path.read_bytes()
        data: Any = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the secrets file {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the secrets file {path} must hold an object of KEY: value")
    return data


def resolve(ref: str, secrets_file: Path | None, environ: Mapping[str, str] | None = None) -> Secret:
    kind, name = parse_ref(ref)
    if kind == "env":
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise ConfigError(f"secret {ref} is not set in the environment")
        return Secret(value)
    if secrets_file is None:
        raise ConfigError(f"secret {ref} needs CNS_SECRETS_FILE to name a secrets file")
    value = _load_file(secrets_file).get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"secret {ref} is not in the secrets file {secrets_file}")
    return Secret(value)


def is_available(ref: str, secrets_file: Path | None, environ: Mapping[str, str] | None = None) -> bool:
    try:
        resolve(ref, secrets_file, environ)
    except ConfigError:
        return False
    return True


def looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def contains_credential(value: str) -> bool:
    return any(p.search(value) for p in _CREDENTIAL_PATTERNS)


def _parameters(text: str) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of a query or fragment, separated by ``&`` or ``;``."""
    return [pair for chunk in text.split(";") for pair in parse_qsl(chunk, keep_blank_values=True)]


def url_secrets(url: str) -> list[str]:
    """What in ``url`` carries a secret, by name: its query or fragment parameters named like secrets
    (``?secret_key=...``, ``#access_token=...``, any scheme or none), and ``password`` for a password in
    the URL itself. The names :func:`redact_url` hides in outputs; settings refuse them. Never a value."""
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:  # not a URL at all (an unbalanced "[" in the host): nothing to find
        return []
    found = [k for k, _ in _parameters(parts.query) + _parameters(parts.fragment) if looks_secret(k)]
    if password is not None:
        found.append("password")
    return list(dict.fromkeys(found))


def redact_url(url: str) -> str:
    """Hide the password and secret-looking query values of a URL."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@")
    query = urlencode(
        [(k, REDACTED if looks_secret(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    for pattern in _CREDENTIAL_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (settings, audit data) safe to print or log."""
    if key and looks_secret(key) and not key.endswith("_ref") and key != "secrets":
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(redact_url(value) if value.startswith(("http://", "https://")) else value)
    return value
