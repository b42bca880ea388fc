"""The retry policy: what happens to a delivery after an error, decided from the error's type alone.

| error | delivery becomes | next attempt | counts as an attempt |
|---|---|---|---|
| RateLimited | errored | exactly ``retry_after`` later | no |
| TransientError | errored, or failed after ``max_attempts`` | exponential backoff with jitter | yes |
| TargetMigrated | queued (the group's id is updated) | now | no |
| AuthFailed | queued, held while the account is paused | when the account resumes | no |
| TargetGone | failed (the group is marked unreachable) | never | - |
| PermanentError | failed | never | - |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tenacity import wait_exponential_jitter

from broadcaster.domain.errors import (
    AuthFailed,
    DeliveryError,
    PermanentError,
    RateLimited,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.states import DeliveryState

DEFAULT_MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Decision:
    state: DeliveryState
    next_attempt_at: datetime | None
    counts: bool  # whether this attempt is charged against max_attempts


@dataclass(frozen=True, slots=True)
class _Attempt:
    """The one field tenacity's wait strategies read from a RetryCallState."""

    attempt_number: int


class RetryPolicy:
    def __init__(
        self,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        initial: float = 2.0,
        maximum: float = 900.0,
        jitter: float = 2.0,
    ) -> None:
        self.max_attempts = max_attempts
        self._wait = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)

    def backoff(self, attempts: int) -> float:
        return float(self._wait(_Attempt(attempts)))  # type: ignore[arg-type]

    def decide(self, error: DeliveryError, attempts: int, now: datetime) -> Decision:
        if isinstance(error, RateLimited):
            return Decision(DeliveryState.ERRORED, now + timedelta(seconds=error.retry_after), counts=False)
        if isinstance(error, TargetMigrated):
            return Decision(DeliveryState.QUEUED, now, counts=False)
        if isinstance(error, AuthFailed):
            return Decision(DeliveryState.QUEUED, None, counts=False)
        if isinstance(error, TargetGone | PermanentError):
            return Decision(DeliveryState.FAILED, None, counts=True)
        if isinstance(error, TransientError) and attempts < self.max_attempts:
            wait = timedelta(seconds=self.backoff(attempts))
            return Decision(DeliveryState.ERRORED, now + wait, counts=True)
        # Out of attempts, or an error type we do not know.
        return Decision(DeliveryState.FAILED, None, counts=True)
