"""Token buckets and the retry policy, on a controlled clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broadcaster.dispatch.ratelimit import PACED_BURST, SAFETY, Limits, LocalLimit, TokenBucket
from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.domain.errors import (
    AuthFailed,
    PermanentError,
    RateLimited,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.sqltypes import utcnow


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_bucket_burst_then_rate_then_block() -> None:
    clock = Clock()
    bucket = TokenBucket(30, clock=clock)
    await bucket.acquire(max_wait=0)  # one token: sends are paced, never bursting past the window
    with pytest.raises(LocalLimit) as held:
        await bucket.acquire(max_wait=0)
    assert held.value.wait == pytest.approx((2 - PACED_BURST) / 30)  # the slack tenth is already there
    sent = 1
    for _ in range(200):  # over one second of a fake clock: at most 30 more
        clock.t += 0.005
        try:
            await bucket.acquire(max_wait=0)
            sent += 1
        except LocalLimit:
            pass
    assert 28 <= sent <= 31  # paced at 1/30 s: never more than 0 s plus 30 in the following second
    burst = TokenBucket(30, burst=30, clock=clock)
    for _ in range(30):
        await burst.acquire(max_wait=0)  # an explicit burst size lets 30 go at once
    bucket.block(7)
    with pytest.raises(LocalLimit) as blocked:
        await bucket.acquire(max_wait=0)
    assert blocked.value.wait == pytest.approx(7)
    clock.t += 7
    await bucket.acquire(max_wait=0)  # exactly when the platform said
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(0)


def test_limits_from_platform_defaults_and_settings() -> None:
    limits = Limits()
    assert limits.account(1, "telegram", {}).rate == pytest.approx(30 * 0.97)  # paced just under the limit
    assert limits.account(2, "zalo", {"rate_per_second": 3}).rate == pytest.approx(3 * 0.97)
    group = limits.group(9, "telegram", {})
    assert group is not None and group.rate == pytest.approx(20 / 60 * 0.97)
    # a little slack for timer lateness, never enough for one send over the limit in a window
    assert group.capacity + group.rate * 60 < 21
    telegram = limits.account(1, "telegram", {})
    assert telegram.capacity + telegram.rate * 1.0 < 31
    assert limits.group(10, "webhook", {}) is None
    assert limits.group(11, "webhook", {"group_rate_per_minute": 6}) is not None


def test_policy_table() -> None:
    policy = RetryPolicy(max_attempts=3, initial=2, maximum=60, jitter=0)
    now = utcnow()
    assert policy.decide(RateLimited("x", 7), 2, now).next_attempt_at == now + timedelta(seconds=7)
    assert not policy.decide(RateLimited("x", 7), 2, now).counts
    transient = policy.decide(TransientError("x"), 1, now)
    assert (
        transient.state == "errored"
        and transient.counts
        and transient.next_attempt_at == now + timedelta(seconds=2)
    )
    assert policy.decide(TransientError("x"), 2, now).next_attempt_at == now + timedelta(
        seconds=4
    )  # exponential
    assert policy.decide(TransientError("x"), 3, now).state == "failed"
    assert policy.decide(PermanentError("x"), 1, now).state == "failed"
    assert policy.decide(TargetGone("x"), 1, now).state == "failed"
    migrated = policy.decide(TargetMigrated("x", "-100"), 1, now)
    assert (migrated.state, migrated.next_attempt_at, migrated.counts) == ("queued", now, False)
    paused = policy.decide(AuthFailed("x"), 1, now)
    assert (paused.state, paused.next_attempt_at, paused.counts) == ("queued", None, False)
    jittered = RetryPolicy(initial=2, maximum=60, jitter=2)
    assert all(2 <= jittered.backoff(1) <= 4 for _ in range(20))


async def test_an_account_rate_adapts_to_a_limit_lower_than_configured() -> None:
    """AIMD: a 429 brings the rate down to what the platform accepted in the last second (less 10 %),
    once per refusal however many sends in flight it hits; the rate then creeps back up slowly and
    never above the configured ceiling; a learned rate is where a new worker starts."""
    now = [1000.0]
    limits = Limits(clock=lambda: now[0])
    bucket = limits.account(1, "telegram", {})
    assert bucket.rate == pytest.approx(30 * SAFETY)
    for _ in range(21):  # the platform accepted 20 in the last second, refused the 21st
        now[0] += bucket.delay() + 1e-9
        await bucket.acquire(max_wait=0.0)
    assert limits.slow_down(1, "telegram", {}, 1.0)
    learned = bucket.rate
    assert 17 <= learned <= 19.5  # ~90 % of what went through, not 90 % of 29
    assert not limits.slow_down(1, "telegram", {}, 1.0)  # the same refusal, seen by another send
    assert bucket.rate == learned and bucket.decreases == 1
    now[0] += 61  # the 1 s wait, then a minute without refusal: up by 0.05 % of the ceiling a second
    bucket.delay()
    assert bucket.rate == pytest.approx(learned + 60 * 30 * SAFETY * 0.0005)
    now[0] += 100_000
    bucket.delay()
    assert bucket.rate == pytest.approx(30 * SAFETY)  # never above what is configured
    again = Limits(clock=lambda: now[0])
    again.learned[1] = learned
    assert again.account(1, "telegram", {}).rate == learned
