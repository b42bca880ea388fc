"""Dates and times as people here write them, and dates far outside any use refused clearly."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from broadcaster.domain.errors import InputError
from broadcaster.domain.timeutil import LOCAL_TZ, parse_date, parse_time
from broadcaster.reports.monthly import month_bounds


def test_local_and_iso_forms_are_both_read() -> None:
    assert parse_date("01/07/2025") == parse_date("2025-07-01") == date(2025, 7, 1)
    assert parse_date(" 5/3/2026 ") == date(2026, 3, 5)
    local = parse_time("01/12/2026 08:00")
    assert local == parse_time("2026-12-01T08:00") == datetime(2026, 12, 1, 8, 0, tzinfo=LOCAL_TZ)
    assert parse_time("2026-12-01T08:00-05:00").utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize("text", ["31/02/2026", "2026-13-01", "hôm qua", "1/1/26"])
def test_impossible_dates_are_input_errors(text: str) -> None:
    with pytest.raises(InputError, match="invalid date"):
        parse_date(text)


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_date, "0001-01-01"),
        (parse_time, "9999-12-31T23:59-05:00"),
        (parse_time, "0001-01-01T00:00"),
        (month_bounds, "9999-12"),
        (month_bounds, "0001-01"),
    ],
)
def test_years_out_of_range_are_input_errors_not_overflows(parse: object, text: str) -> None:
    with pytest.raises(InputError, match="out of range"):
        parse(text)  # type: ignore[operator]
