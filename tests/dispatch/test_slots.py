"""The dispatcher's send slots (a semaphore with O(1) hand-over): the bound, the order, cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from broadcaster.dispatch.dispatcher import _Slots


async def test_never_more_than_the_slots_and_first_come_first_served() -> None:
    slots = _Slots(3)
    holding, peak, order = 0, 0, []

    async def job(i: int) -> None:
        nonlocal holding, peak
        async with slots:
            order.append(i)
            holding += 1
            peak = max(peak, holding)
            for _ in range(3):
                await asyncio.sleep(0)
            holding -= 1

    await asyncio.gather(*(job(i) for i in range(20)))
    assert peak == 3
    assert order == list(range(20))


async def test_a_cancelled_waiter_loses_no_slot() -> None:
    slots = _Slots(1)
    await slots.__aenter__()  # the only slot, held here
    entered: list[str] = []

    async def enter(name: str) -> None:
        async with slots:
            entered.append(name)

    queued, handed = asyncio.create_task(enter("queued")), asyncio.create_task(enter("handed"))
    await asyncio.sleep(0)  # both wait, in that order
    queued.cancel()  # cancelled while waiting: skipped when the slot comes free
    await asyncio.sleep(0)
    await slots.__aexit__(None, None, None)  # the slot goes to `handed`, which has not run yet...
    handed.cancel()  # ...and is cancelled before it could: it must pass the slot on
    for task in (queued, handed):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert entered == []
    await asyncio.wait_for(enter("after"), timeout=1)  # the slot is free again
    assert entered == ["after"]
