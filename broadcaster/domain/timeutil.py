"""Local time for the product: Vietnam (Asia/Ho_Chi_Minh, UTC+7, no DST)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from broadcaster.domain.errors import InputError

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def today() -> date:
    return datetime.now(LOCAL_TZ).date()


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"invalid date {text!r}: use YYYY-MM-DD") from None


def parse_time(text: str) -> datetime:
    """ISO date-time; without an offset it is local time in Asia/Ho_Chi_Minh."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"invalid time {text!r}: use YYYY-MM-DDTHH:MM (local time) or add an offset"
        ) from None
    return value.replace(tzinfo=LOCAL_TZ) if value.tzinfo is None else value
