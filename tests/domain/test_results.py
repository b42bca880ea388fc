"""``to_data``: the one way a typed result becomes the data ``--json`` and the API print."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum

import pytest

from broadcaster.domain.results import OMIT_IF_NONE, as_dict, renamed, to_data


class Colour(StrEnum):
    RED = "red"


@dataclass(frozen=True, slots=True)
class Inner:
    day: date
    at: datetime | None


@dataclass(frozen=True, slots=True)
class Outer:
    dispatch_id: int = field(metadata=renamed("dispatch"))
    colour: Colour
    items: tuple[Inner, ...]
    counts: dict[Colour, int]
    note: str | None = field(default=None, metadata=OMIT_IF_NONE)
    kept: str | None = None


def test_fields_in_order_renamed_omitted_and_plain() -> None:
    at = datetime(2026, 12, 1, 8, 0, 5, 120, tzinfo=UTC)
    data = to_data(
        Outer(7, Colour.RED, (Inner(date(2025, 7, 1), at), Inner(date(2025, 7, 2), None)), {Colour.RED: 2})
    )
    assert json.dumps(data) == json.dumps(
        {
            "dispatch": 7,
            "colour": "red",
            "items": [
                {"day": "2025-07-01", "at": "2026-12-01T08:00:05.000120+00:00"},
                {"day": "2025-07-02", "at": None},
            ],
            "counts": {"red": 2},
            "kept": None,
        }
    )
    assert type(data["colour"]) is str  # type: ignore[index]  # the enum's value, not the member
    assert as_dict(Outer(1, Colour.RED, (), {}, note="n"))["note"] == "n"
    assert to_data([Inner(date(2025, 1, 1), None)]) == [{"day": "2025-01-01", "at": None}]


def test_what_has_no_plain_data_is_refused() -> None:
    with pytest.raises(TypeError, match="no plain data for a set"):
        to_data({"x": {1, 2}})
    with pytest.raises(TypeError, match="a key must be a string"):
        to_data({1: "one"})
    with pytest.raises(TypeError, match="not a dataclass result"):
        as_dict([1])
