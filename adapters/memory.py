"""An in-memory twin of a platform, for unit tests of everything above the adapters.

It keeps what was sent per target, answers member counts, and fails on demand with any of our
delivery errors, so a test can script exactly what a platform would do without a socket.

It honours the same contract as the real adapters (``tests/adapters/contract``), shaped like a chat
platform with captions (Telegram): one message id per message the group would show, in order; the
text parts, then one message per medium (an album item is a message), except a single medium sent
with ``caption``, which is one message carrying that caption. A message with nothing to show is
refused. A message that is not there (never sent to that target, or already deleted) cannot be
edited (PermanentError); deleting it again succeeds, as a recall run twice must.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from broadcaster.domain.errors import DeliveryError, NotSupported, PermanentError, TargetGone
from broadcaster.domain.ports import Media, RenderedMessage, SendResult, Target


@dataclass
class Posted:
    """One message as the group would show it: its text (or caption) and its media."""

    target: str
    text: str | None
    media: tuple[Media, ...] = ()
    deleted: bool = False


def shown(message: RenderedMessage) -> list[tuple[str | None, tuple[Media, ...]]]:
    """The messages a chat platform with captions creates for ``message``, in order (photos before
    documents, as Telegram sends them: an album cannot mix the two)."""
    if len(message.media) == 1 and message.caption is not None:
        return [(message.caption, message.media)]
    media = sorted(message.media, key=lambda m: m.kind != "photo")  # stable
    return [(part, ()) for part in message.parts] + [(None, (m,)) for m in media]


@dataclass
class MemorySender:
    platform: str = "memory"
    sent: dict[str, list[RenderedMessage]] = field(default_factory=lambda: defaultdict(list))
    keys: list[str] = field(default_factory=list)
    members: dict[str, int] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    failures: list[DeliveryError] = field(default_factory=list)  # raised by the next calls, in order
    part_failures: list[tuple[int, DeliveryError]] = field(default_factory=list)  # see fail_after
    deleted: set[str] = field(default_factory=set)
    edits: dict[str, list[RenderedMessage]] = field(default_factory=lambda: defaultdict(list))
    can_delete: bool = True
    can_edit: bool = True
    closed: bool = False
    messages: dict[str, Posted] = field(default_factory=dict)  # by message id, in the order created
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, *errors: DeliveryError) -> None:
        self.failures.extend(errors)

    def fail_after(self, messages: int, error: DeliveryError) -> None:
        """A later send breaks off with ``error`` once this delivery has ``messages`` messages out."""
        self.part_failures.append((messages, error))

    def _check(self, target: Target) -> None:
        if self.failures:
            raise self.failures.pop(0)
        if target.external_id in self.gone:
            raise TargetGone(f"{self.platform}: target {target.external_id} is gone")

    def _posted(self, target: Target, message_id: str, what: str) -> Posted:
        posted = self.messages.get(message_id)
        if posted is None or posted.target != target.external_id or posted.deleted:
            raise PermanentError(f"{self.platform}: message {message_id} to {what} not found")
        return posted

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        self._check(target)
        created = shown(message)
        if not created:
            raise PermanentError(f"{self.platform}: the message is empty")
        self.sent[target.external_id].append(message)
        self.keys.append(key)
        ids = list(target.sent)  # sent by an earlier attempt: not again
        for text, media in created[len(ids) :]:
            if self.part_failures and len(ids) >= self.part_failures[0][0]:
                raise self.part_failures.pop(0)[1].after(tuple(ids))
            message_id = str(next(self._ids))
            self.messages[message_id] = Posted(target.external_id, text, media)
            ids.append(message_id)
        return SendResult(tuple(ids))

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        self._check(target)
        if not self.can_edit:
            raise NotSupported(f"{self.platform}: cannot edit")
        self._posted(target, message_id, "edit").text = "\n\n".join(message.parts)
        self.edits[message_id].append(message)

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        self._check(target)
        if not self.can_delete:
            raise NotSupported(f"{self.platform}: cannot delete")
        for message_id in message_ids:  # one already gone counts as deleted (as the platforms answer)
            posted = self.messages.get(message_id)
            if posted is not None and posted.target == target.external_id:
                posted.deleted = True
            self.deleted.add(message_id)

    async def member_count(self, target: Target) -> int | None:
        self._check(target)
        return self.members.get(target.external_id)

    async def close(self) -> None:
        self.closed = True
