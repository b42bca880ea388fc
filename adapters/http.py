"""The aiohttp plumbing shared by the HTTP adapters: one session per account, errors mapped once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from broadcaster.domain.errors import TransientError

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


def new_session(limit: int = 100, timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (an HTML page from a proxy, say)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


async def request(
    session: aiohttp.ClientSession, method: str, url: str, *, what: str, **kwargs: Any
) -> Reply:
    """One HTTP exchange; network failures become :class:`TransientError` (never with the URL, which
    may hold a token)."""
    try:
        async with session.request(method, url, **kwargs) as response:
            body = await response.read()
            return Reply(response.status, dict(response.headers), body)
    except TimeoutError:
        raise _maybe_sent(TransientError(f"{what}: timed out")) from None
    except aiohttp.ClientConnectorError as exc:  # no connection: the request never left
        raise TransientError(f"{what}: {type(exc).__name__}") from None
    except aiohttp.ClientError as exc:  # dropped after the request was sent: it may have been read
        raise _maybe_sent(TransientError(f"{what}: {type(exc).__name__}")) from None
    except asyncio.CancelledError:
        raise


def _maybe_sent(error: TransientError) -> TransientError:
    error.maybe_sent = True
    return error


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """A ``Retry-After`` header in seconds (an HTTP date is read too), or ``default``."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)
