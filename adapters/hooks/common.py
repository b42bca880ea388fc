"""Helpers shared by the hook codecs: strict JSON reading and value coercion."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broadcaster.domain.errors import BadPayload


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``BadPayload`` (never a ``ValueError`` or a ``RecursionError``).

    JSON is UTF-8 (RFC 8259): the bytes are decoded strictly (``json.loads`` of bytes would let encoded
    surrogates through), and a string holding a lone surrogate (``"\\ud800"``, valid JSON escape syntax
    but no character) is refused too: it could never be stored or shown."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise BadPayload("the body is not JSON in UTF-8") from None
    if not isinstance(value, dict):
        raise BadPayload("the body is not a JSON object")
    if not _encodable(value):
        raise BadPayload("the body holds a lone surrogate: not valid Unicode")
    return value


def _encodable(value: object) -> bool:
    """Whether every string in ``value`` (keys included) is valid Unicode (no lone surrogates)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def header(headers: Mapping[str, str], name: str) -> str:
    """A request header by its lower-case name, whatever case the sender used ("" when absent)."""
    return next((v for k, v in headers.items() if k.lower() == name), "")


def obj(value: object) -> dict[str, Any]:
    """A nested object, or an empty one when the field is missing or of another type."""
    return value if isinstance(value, dict) else {}


def ident(value: object) -> str | None:
    """A platform id (int or str in the JSON) as text; None when absent or not an id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str) and str(value) and len(str(value)) <= 128:
        return str(value)
    return None


def text(value: object, limit: int = 4096) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def epoch(value: object, *, millis: bool = False) -> datetime | None:
    """Epoch seconds (or milliseconds, as Zalo sends them, often as a string) as an aware datetime."""
    try:
        number = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        )
    except ValueError:
        return None
    if number is None:
        return None
    try:
        return datetime.fromtimestamp(number / 1000 if millis else number, UTC)
    except (OverflowError, OSError, ValueError):
        return None
