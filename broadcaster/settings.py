"""Settings read from the environment, once, at the composition root (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./cns.db"
DEFAULT_ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide settings. Every field has an environment variable (see the README)."""

    database_url: str = DEFAULT_DATABASE_URL
    user: str | None = None
    secrets_file: Path | None = None
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES
    token_dir: Path = Path("cns-tokens")  # rotating OAuth tokens (Zalo), one 0600 file per account
    public_url: str = "http://127.0.0.1:8080"  # where `cns serve` is reached: links, confirmations
    link_secret: str = ""  # keys the confirmation links; set CNS_LINK_SECRET in production

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
        )
