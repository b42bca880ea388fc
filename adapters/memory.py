"""An in-memory twin of a platform, for unit tests of everything above the adapters.

It keeps what was sent per target, answers member counts, and fails on demand with any of our
delivery errors, so a test can script exactly what a platform would do without a socket.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from broadcaster.domain.errors import DeliveryError, NotSupported, TargetGone
from broadcaster.domain.ports import RenderedMessage, SendResult, Target


@dataclass
class MemorySender:
    platform: str = "memory"
    sent: dict[str, list[RenderedMessage]] = field(default_factory=lambda: defaultdict(list))
    keys: list[str] = field(default_factory=list)
    members: dict[str, int] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    failures: list[DeliveryError] = field(default_factory=list)  # raised by the next calls, in order
    deleted: set[str] = field(default_factory=set)
    edits: dict[str, list[RenderedMessage]] = field(default_factory=lambda: defaultdict(list))
    can_delete: bool = True
    can_edit: bool = True
    closed: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, *errors: DeliveryError) -> None:
        self.failures.extend(errors)

    def _check(self, target: Target) -> None:
        if self.failures:
            raise self.failures.pop(0)
        if target.external_id in self.gone:
            raise TargetGone(f"{self.platform}: target {target.external_id} is gone")

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        self._check(target)
        self.sent[target.external_id].append(message)
        self.keys.append(key)
        return SendResult(tuple(str(next(self._ids)) for _ in message.parts or ("",)))

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        self._check(target)
        if not self.can_edit:
            raise NotSupported(f"{self.platform}: cannot edit")
        self.edits[message_id].append(message)

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        self._check(target)
        if not self.can_delete:
            raise NotSupported(f"{self.platform}: cannot delete")
        self.deleted.update(message_ids)

    async def member_count(self, target: Target) -> int | None:
        self._check(target)
        return self.members.get(target.external_id)

    async def close(self) -> None:
        self.closed = True
