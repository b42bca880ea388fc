"""What recall and correction share: the tally of outcomes per platform, one adapter per account, and
the pacing of their sends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from broadcaster.dispatch.ratelimit import Limits
from broadcaster.domain.errors import RateLimited
from broadcaster.domain.models import Account, pk
from broadcaster.domain.ports import Sender
from broadcaster.domain.states import AccountStatus

T = TypeVar("T")


@dataclass(slots=True)
class Tally:
    """Outcomes per platform, and the first errors, for a report a person reads."""

    by_platform: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def note(self, platform: str, what: str) -> None:
        self.by_platform.setdefault(platform, Counter())[what] += 1

    def fail(self, platform: str, group_title: str, reason: str) -> None:
        self.note(platform, "failed")
        self.errors.append(f"group {group_title!r}: {reason}")

    def counts(self) -> dict[str, dict[str, int]]:
        return {p: dict(c) for p, c in self.by_platform.items()}

    def first_errors(self) -> tuple[str, ...]:
        """The errors a report shows: the first 20."""
        return tuple(self.errors[:20])


class SenderPool:
    """One adapter per account for the length of an operation, closed at its end."""

    def __init__(self, make: Callable[[Account], Sender]) -> None:
        self._make = make
        self._senders: dict[int, Sender] = {}

    def get(self, account: Account) -> Sender:
        key = pk(account.id)
        if key not in self._senders:
            self._senders[key] = self._make(account)
        return self._senders[key]

    def channels(self, accounts: Mapping[int, Account]) -> dict[str, Sender]:
        """An active account per platform: the channels a relay reaches admins through."""
        return {a.platform: self.get(a) for a in accounts.values() if a.status == AccountStatus.ACTIVE}

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()


class Pacer:
    """Recall and correction reach every group a dispatch went to, thousands at a time: each call waits
    for its account's (and group's) platform limit, and a platform's "too many requests" is waited out
    and tried again (``tries`` times, each wait at most ``max_wait`` s) instead of failing the group.
    The buckets are this process's: a worker broadcasting on the same account at the same moment is
    not counted, and the platform's 429s, waited out here, cover that case."""

    def __init__(self, tries: int = 4, max_wait: float = 120.0) -> None:
        self.limits = Limits()
        self.tries = tries
        self.max_wait = max_wait

    async def call(self, account: Account, group_id: int, action: Callable[[], Awaitable[T]]) -> T:
        key = (pk(account.id), account.platform, account.settings)
        for attempt in range(1, self.tries + 1):
            await self.limits.take(*key, group_id, self.max_wait)
            try:
                return await action()
            except RateLimited as exc:
                if attempt == self.tries or exc.retry_after > self.max_wait:
                    raise
                self.limits.slow_down(*key, exc.retry_after)  # the next take waits it out, slower
        raise AssertionError("unreachable: the last attempt returns or raises")
