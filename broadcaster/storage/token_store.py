"""Rotating OAuth tokens kept in a file next to the secrets (never in the database), written atomically.

One JSON file per account, mode 0600. A rotation holds an exclusive ``flock`` on a lock file for the
whole exchange, so two workers (or two processes) never spend the same single-use refresh token; the
new pair is written to a temporary file, fsynced and renamed over the old one (then the folder is
fsynced) before the lock is released: a crash leaves either the old pair or the new one, never neither.
If the exchange succeeded but the process died before the rename, the refresh token was spent and the
account must be re-authorised; that window is the few microseconds between the answer and the write.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from broadcaster.domain.errors import ConfigError
from broadcaster.domain.ports import OAuthTokens


class FileTokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._local = asyncio.Lock()  # the flock is per process; this serialises tasks within one

    async def load(self) -> OAuthTokens | None:
        return await asyncio.to_thread(self._read)

    def _read(self) -> OAuthTokens | None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"token file {self.path} is unreadable: {type(exc).__name__}") from None
        try:
            return OAuthTokens(str(raw["access_token"]), str(raw["refresh_token"]), float(raw["expires_at"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"token file {self.path} is missing access_token, refresh_token or expires_at"
            ) from None

    def _write(self, tokens: OAuthTokens) -> None:
        data = json.dumps(
            {
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "expires_at": tokens.expires_at,
            }
        ).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def save(self, tokens: OAuthTokens) -> None:
        """Store a pair obtained elsewhere (the first authorisation)."""
        async with self._local:
            await asyncio.to_thread(self._write, tokens)

    async def rotate(
        self, stale: str, exchange: Callable[[OAuthTokens], Awaitable[OAuthTokens]]
    ) -> OAuthTokens:
        """Refresh unless someone already replaced the access token ``stale`` (then return theirs)."""
        async with self._local:
            lock_fd = await asyncio.to_thread(_lock, self._lock_path)
            try:
                current = self._read()
                if current is None:
                    raise ConfigError(f"no tokens in {self.path}: authorise the account first")
                if current.access_token != stale:
                    return current
                fresh = await exchange(current)
                await asyncio.to_thread(self._write, fresh)
                return fresh
            finally:
                os.close(lock_fd)  # closing the descriptor releases the flock


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd
