"""Token buckets for platform limits (per account and per target group), awaited before each send.

Platforms count their limits over sliding windows ("30 per second", "20 per minute"): a bucket that
started full would let a burst of ``capacity`` through and then the refill on top of it, twice the limit
in the first window. So the buckets here hold one token by default: sends are paced evenly at the
rate and no window ever sees more than the limit. A ``RateLimited`` answer from the platform blocks the
bucket until its ``retry_after`` has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from broadcaster.domain.errors import DeliveryError, RateLimited
from broadcaster.domain.platforms import FACTS

# Defaults come from the platform registry (broadcaster.domain.platforms: the documented limits); every
# one can be overridden per account with the settings ``rate_per_second`` and ``group_rate_per_minute``.
UNKNOWN_PLATFORM_RATE = 10.0
# The platform counts arrival times; the network can bunch two evenly paced sends. Pacing at 97 % of
# each limit keeps every window under it (the 3 % costs 0.6 s on a 20 s broadcast).
SAFETY = 0.97


# A tenth of a token of slack: an event loop wakes a little late, and a bucket of exactly one token
# would lose that lateness on every send (~3.5 % of a 30/s broadcast). 1.1 + 0.97 x limit stays under
# limit + 1 in any window, so the platform never sees more than its limit from us.
PACED_BURST = 1.1


HELD = "held by the"  # how a RateLimited from our own buckets (not the platform) begins


def is_held(error: DeliveryError | None) -> bool:
    """A delivery given back by our own limit: not sent, not charged, not the platform's 429."""
    return isinstance(error, RateLimited) and error.reason.startswith(HELD)


class LocalLimit(Exception):
    """Our own limit says: the next token is ``wait`` seconds away."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limit: next slot in {wait:.1f} s")
        self.wait = wait


class TokenBucket:
    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else PACED_BURST
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        if now > self.updated:  # after a block, ``updated`` is in the future: nothing refills before it
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def delay(self) -> float:
        """Seconds until a token is available (0: now)."""
        now = self.clock()
        self._refill(now)
        wait = max(0.0, self.blocked_until - now)
        if self.tokens < 1:
            wait = max(wait, (1 - self.tokens) / self.rate)
        return wait

    async def acquire(self, max_wait: float = float("inf")) -> None:
        """Take a token, waiting for it up to ``max_wait`` seconds; beyond that raise :class:`LocalLimit`
        at once, so the caller can give the delivery back with a due time instead of holding it."""
        if not self._lock.locked() and self.delay() == 0:  # nobody waiting, a token ready: no await
            self.tokens -= 1
            return
        async with self._lock:  # first come, first served
            while (wait := self.delay()) > 0:
                if wait > max_wait:
                    raise LocalLimit(wait)
                await asyncio.sleep(wait)
            self.tokens -= 1

    def block(self, seconds: float) -> None:
        """The platform said wait: no token before ``seconds`` from now, then one, then the normal rate."""
        now = self.clock()
        self.blocked_until = max(self.blocked_until, now + seconds)
        self.tokens = 1.0
        self.updated = self.blocked_until


class Limits:
    """The buckets of one worker, made on first use from each account's settings."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.accounts: dict[int, TokenBucket] = {}
        self.groups: dict[int, TokenBucket] = {}

    def account(self, account_id: int, platform: str, settings: dict[str, object]) -> TokenBucket:
        bucket = self.accounts.get(account_id)
        if bucket is None:
            facts = FACTS.get(platform)
            default = facts.account_rate if facts is not None else UNKNOWN_PLATFORM_RATE
            rate = float(settings.get("rate_per_second") or default)  # type: ignore[arg-type]
            bucket = self.accounts[account_id] = TokenBucket(rate * SAFETY, clock=self.clock)
        return bucket

    async def take(
        self,
        account_id: int,
        platform: str,
        settings: dict[str, object],
        group_id: int | None = None,
        max_wait: float = float("inf"),
    ) -> None:
        """A token of the account's bucket (and the group's, when its platform limits groups); a wait
        over ``max_wait`` is a :class:`RateLimited` held by our own limit (see :func:`is_held`)."""
        try:
            await self.account(account_id, platform, settings).acquire(max_wait)
            per_group = self.group(group_id, platform, settings) if group_id is not None else None
            if per_group is not None:
                await per_group.acquire(max_wait)
        except LocalLimit as wait:
            raise RateLimited(f"{HELD} {platform} rate limit", wait.wait) from None

    def group(self, group_id: int, platform: str, settings: dict[str, object]) -> TokenBucket | None:
        facts = FACTS.get(platform)
        per_minute = settings.get("group_rate_per_minute") or (facts and facts.group_rate_per_minute)
        if not per_minute:
            return None
        bucket = self.groups.get(group_id)
        if bucket is None:
            rate = float(per_minute) / 60.0 * SAFETY  # type: ignore[arg-type]
            bucket = self.groups[group_id] = TokenBucket(rate, clock=self.clock)
        return bucket
