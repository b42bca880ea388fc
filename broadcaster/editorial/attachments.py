"""Attachments, stored once by the SHA-256 of their bytes, after the size and type checks
(``content.attachments.sniff``: the type is decided from the bytes, not trusted from the name)."""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.errors import InputError
from broadcaster.domain.models import Attachment
from content.attachments import sniff


def _read(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"attachment {path.name}: {size:,} bytes is over the limit of {max_bytes:,}")
    return path.read_bytes()


async def store(session: AsyncSession, path: Path, max_bytes: int) -> Attachment:
    """Store the file at ``path`` (once per content hash) and return its row."""
    try:
        data = await asyncio.to_thread(_read, path, max_bytes)
    except OSError as exc:
        raise InputError(f"attachment {path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise InputError(f"attachment {path.name}: empty file")
    filename = unicodedata.normalize("NFC", path.name)
    media_type = sniff(data, filename)
    digest = hashlib.sha256(data).hexdigest()
    found = (await session.execute(select(Attachment).where(col(Attachment.sha256) == digest))).scalar()
    if found is not None:
        return found
    attachment = Attachment(
        sha256=digest, filename=filename, media_type=media_type, size=len(data), data=data
    )
    session.add(attachment)
    await session.flush()
    return attachment
