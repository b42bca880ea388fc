"""Token buckets for platform limits (per account and per target group), awaited before each send.

Platforms count their limits over sliding windows ("30 per second", "20 per minute"): a bucket that
started full would let a burst of ``capacity`` through and then the refill on top of it, twice the limit
in the first window. So the buckets here hold one token by default: sends are paced evenly at the
rate and no window ever sees more than the limit. A ``RateLimited`` answer from the platform blocks the
bucket until its ``retry_after`` has passed.

The configured rate is a ceiling, not a promise: a platform may enforce less (a Telegram bot answering
429 at 20 messages/s while configured for 30). An account's bucket therefore adapts, additive increase
and multiplicative decrease: a 429 sets the rate to what the platform accepted over the last second
(counted from our own sends) less 10 %, or 90 % of the rate when that count is not lower; then the rate
creeps back towards the ceiling by 0.05 % of it per second, so the next probe above the real limit comes
about half a minute later. The learned rate is kept per account (``Limits.learned``) so a new worker
starts from it.
"""

from __future__ import annotations

import asyncio
import collections
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


# Adaptive rate (see the module's docstring): after a 429, 90 % of what the platform accepted in the last
# second (or 90 % of the rate), never below 2 % of the ceiling; back up by 0.05 % of the ceiling a second.
DECREASE = 0.9
BELOW_ACCEPTED = 0.9
FLOOR = 0.02
INCREASE_PER_SECOND = 0.0005


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
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        adaptive: bool = False,
        start: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = rate
        self.rate = min(rate, start) if start else rate
        self.capacity = burst if burst is not None else PACED_BURST
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.blocked_until = 0.0
        self._lock = asyncio.Lock()
        self.adaptive = adaptive
        self.decreases = 0  # 429s that lowered the rate
        self.taken: collections.deque[float] = collections.deque(maxlen=int(rate * 2) + 2)

    def _refill(self, now: float) -> None:
        if now > self.updated:  # after a block, ``updated`` is in the future: nothing refills before it
            if self.rate < self.ceiling:  # additive increase: probe back towards the configured rate
                self.rate = min(
                    self.ceiling, self.rate + (now - self.updated) * self.ceiling * INCREASE_PER_SECOND
                )
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def slow_down(self, retry_after: float) -> bool:
        """The platform answered 429: wait ``retry_after``, and (adaptive buckets) lower the rate to what
        it accepted. Several sends in flight get the same 429: only the first one lowers the rate."""
        now = self.clock()
        lowered = False
        if self.adaptive and now >= self.blocked_until:
            accepted = sum(1 for t in self.taken if t > now - 1.0)
            target = self.rate * DECREASE
            # What went through in the last second tells the platform's limit only when we were sending
            # near our own pace; a few sends refused say nothing about it (another limit, a burst).
            if accepted >= self.rate / 2 and accepted * BELOW_ACCEPTED < target:
                target = accepted * BELOW_ACCEPTED
            self.rate = max(self.ceiling * FLOOR, target)
            self.decreases += 1
            lowered = True
        self.block(retry_after)
        return lowered

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
            if self.adaptive:
                self.taken.append(self.updated)
            return
        async with self._lock:  # first come, first served
            while (wait := self.delay()) > 0:
                if wait > max_wait:
                    raise LocalLimit(wait)
                await asyncio.sleep(wait)
            self.tokens -= 1
            if self.adaptive:
                self.taken.append(self.updated)

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
        self.learned: dict[int, float] = {}  # rates learned before (stored per account): where to start

    def account(self, account_id: int, platform: str, settings: dict[str, object]) -> TokenBucket:
        bucket = self.accounts.get(account_id)
        if bucket is None:
            facts = FACTS.get(platform)
            default = facts.account_rate if facts is not None else UNKNOWN_PLATFORM_RATE
            rate = float(settings.get("rate_per_second") or default)  # type: ignore[arg-type]
            bucket = self.accounts[account_id] = TokenBucket(
                rate * SAFETY, clock=self.clock, adaptive=True, start=self.learned.get(account_id)
            )
        return bucket

    def slow_down(
        self, account_id: int, platform: str, settings: dict[str, object], retry_after: float
    ) -> bool:
        """A 429 from the platform for this account: wait it out and lower the account's rate."""
        return self.account(account_id, platform, settings).slow_down(retry_after)

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
