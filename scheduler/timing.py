"""When each tier of a dispatch goes out: tier waves and quiet hours, in Asia/Ho_Chi_Minh local time.

Waves let leaders see a post before their villages do: ``{"commune": 15, "village": 30}`` sends the
province (and any tier not named) at the dispatch time, communes 15 minutes later and villages 30 minutes
later. Quiet hours (default 21:00-06:00) move any send that would fall inside them to the end of them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from broadcaster.domain.errors import InputError
from broadcaster.domain.timeutil import LOCAL_TZ

DEFAULT_QUIET = (time(21, 0), time(6, 0))


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    def __contains__(self, moment: datetime) -> bool:
        local = moment.astimezone(LOCAL_TZ).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # the window crosses midnight

    def after(self, moment: datetime) -> datetime:
        """``moment``, or the end of the quiet hours it falls in."""
        if moment not in self:
            return moment
        local = moment.astimezone(LOCAL_TZ)
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet(text: str) -> QuietHours | None:
    """``21:00-06:00`` or ``off``."""
    value = text.strip().lower()
    if value in {"off", "none", ""}:
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-", 1))
    except ValueError:
        raise InputError(f"quiet hours {text!r}: use HH:MM-HH:MM (local time) or off") from None
    if start == end:
        raise InputError(f"quiet hours {text!r}: start and end are the same")
    return QuietHours(start, end)


def parse_waves(text: str) -> dict[str, int]:
    """``commune=15,village=30``: minutes after the dispatch time for each named tier."""
    waves: dict[str, int] = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        name, sep, minutes = item.partition("=")
        if not sep or not minutes.strip().isdigit():
            raise InputError(f"wave {item!r}: use TIER=MINUTES, e.g. commune=15,village=30")
        waves[name.strip().lower()] = int(minutes)
    return waves


@dataclass(frozen=True, slots=True)
class QuietPlan:
    """Quiet hours for every tier, with per-tier exceptions (a tier mapped to None has none)."""

    default: QuietHours | None
    tiers: tuple[tuple[str, QuietHours | None], ...] = ()

    def for_tier(self, level: str) -> QuietHours | None:
        return dict(self.tiers).get(level, self.default)

    def after(self, level: str, moment: datetime) -> datetime:
        hours = self.for_tier(level)
        return hours.after(moment) if hours is not None else moment

    def describe(self) -> str:
        parts = [self.default.describe() if self.default else "off"]
        parts += [f"{tier}={hours.describe() if hours else 'off'}" for tier, hours in self.tiers]
        return ",".join(parts)


def parse_quiet_plan(text: str) -> QuietPlan | None:
    """``21:00-06:00`` for all tiers, ``off``, or with exceptions: ``21:00-06:00,village=20:00-07:00,
    province=off``. None when no tier has quiet hours."""
    default: QuietHours | None = None
    tiers: list[tuple[str, QuietHours | None]] = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        tier, sep, hours = item.partition("=")
        if sep:
            tiers.append((tier.strip().lower(), parse_quiet(hours)))
        else:
            default = parse_quiet(item)
    if default is None and not any(hours for _, hours in tiers):
        return None
    return QuietPlan(default, tuple(tiers))


def quiet_resume(plan: str, level: str, now: datetime) -> datetime | None:
    """When a delivery of ``level`` may go out again if ``now`` falls in the dispatch's quiet hours."""
    parsed = _quiet_plan(plan)
    if parsed is None:
        return None
    resume = parsed.after(level, now)
    return resume if resume != now else None


@functools.lru_cache(maxsize=64)
def _quiet_plan(text: str) -> QuietPlan | None:
    return parse_quiet_plan(text)
