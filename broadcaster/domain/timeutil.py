"""Local time for the product: Vietnam (Asia/Ho_Chi_Minh, UTC+7, no DST)."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from broadcaster.domain.errors import InputError

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def today() -> date:
    return datetime.now(LOCAL_TZ).date()


# Dates people may give: far enough back for old reports, far enough ahead for any schedule. Outside
# it, arithmetic on the date (a time zone, the next month) would overflow Python's datetime.
FIRST_YEAR, LAST_YEAR = 1900, 2200
_LOCAL_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_LOCAL_TIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})$")


def check_year(year: int, text: str) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InputError(f"{text!r} is out of range: years {FIRST_YEAR}-{LAST_YEAR}")


def parse_date(text: str) -> date:
    """``YYYY-MM-DD`` or, as people write it here, ``dd/mm/yyyy``."""
    value = text.strip()
    try:
        if match := _LOCAL_DATE.match(value):
            day, month, year = (int(x) for x in match.groups())
            parsed = date(year, month, day)
        else:
            parsed = date.fromisoformat(value)
    except ValueError:
        raise InputError(f"invalid date {text!r}: use dd/mm/yyyy or YYYY-MM-DD") from None
    check_year(parsed.year, text)
    return parsed


def parse_time(text: str) -> datetime:
    """``dd/mm/yyyy HH:MM`` or ISO date-time; without an offset it is local time (Asia/Ho_Chi_Minh)."""
    value = text.strip()
    try:
        if match := _LOCAL_TIME.match(value):
            day, month, year, hour, minute = (int(x) for x in match.groups())
            parsed = datetime(year, month, day, hour, minute)
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"invalid time {text!r}: use dd/mm/yyyy HH:MM or YYYY-MM-DDTHH:MM (local time), or add an offset"
        ) from None
    check_year(parsed.year, text)
    return parsed.replace(tzinfo=LOCAL_TZ) if parsed.tzinfo is None else parsed
