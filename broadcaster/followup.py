"""What recall and correction share: the tally of outcomes per platform, and one adapter per account."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broadcaster.models import Account, pk
from broadcaster.ports import Sender


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

    def to_dict(self) -> dict[str, Any]:
        return {"by_platform": {p: dict(c) for p, c in self.by_platform.items()}, "errors": self.errors[:20]}


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
        return {a.platform: self.get(a) for a in accounts.values() if a.status == "active"}

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()
