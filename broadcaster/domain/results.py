"""Typed results at the service boundary, and the one way they become plain JSON-ready data.

Services return frozen dataclasses (``@dataclass(frozen=True, slots=True)``), defined next to the service
that returns them. Whoever needs plain data (``cns --json``, the JSON API, an audit entry) calls
:func:`to_data`: dataclasses become dicts with their fields as keys, in field order; datetimes and dates
become their ISO 8601 strings (``isoformat()``), enums their values, tuples and lists lists, mappings
dicts. So the keys a script reads are the fields mypy checks, and every output of one operation comes
from one code path.

Two field options cover the answers whose shape is part of the public surface: :func:`renamed` gives a
field another key (``dispatch_id`` is ``"dispatch"`` in the JSON), :data:`OMIT_IF_NONE` leaves a field
out when it is None (an answer that has ``info`` on Telegram and ``where`` elsewhere).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import date, datetime
from typing import TypeAlias

Json: TypeAlias = "str | int | float | bool | list[Json] | dict[str, Json] | None"
"""A JSON value: what :func:`to_data` returns, and the type of free-form data inside a result (an
account's settings, an audit entry's before/after)."""

_KEY = "cns.json_key"
_OMIT = "cns.omit_if_none"

OMIT_IF_NONE: Mapping[str, object] = {_OMIT: True}
"""Field metadata: leave the key out when the value is None (``field(default=None, metadata=...)``)."""


def renamed(key: str) -> Mapping[str, object]:
    """Field metadata: the field's key in the data is ``key`` (``field(metadata=renamed("from"))``)."""
    return {_KEY: key}


def to_data(value: object) -> Json:
    """``value`` as plain data for ``json.dumps``: see the module's docstring."""
    if isinstance(value, enum.Enum):  # before str and int: a StrEnum is a str
        return to_data(value.value)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Json] = {}
        for item in dataclasses.fields(value):
            field_value = getattr(value, item.name)
            if field_value is None and item.metadata.get(_OMIT):
                continue
            out[str(item.metadata.get(_KEY, item.name))] = to_data(field_value)
        return out
    if isinstance(value, Mapping):
        return {_key(k): to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    raise TypeError(f"no plain data for a {type(value).__name__}")


def _key(key: object) -> str:
    if isinstance(key, enum.Enum):
        return str(key.value)
    if isinstance(key, str):
        return str(key)
    raise TypeError(f"a key must be a string, not a {type(key).__name__}")


def as_dict(result: object) -> dict[str, Json]:
    """:func:`to_data` of a dataclass result, typed as the dict it is (to add keys: an audit entry)."""
    data = to_data(result)
    if not isinstance(data, dict):
        raise TypeError(f"a {type(result).__name__} is not a dataclass result")
    return data
