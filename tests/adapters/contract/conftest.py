"""The ``harness`` fixture: one Sender implementation with its sandbox, served on the test's own loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.sandbox.common import Running
from tests.adapters.contract import harness as h


@pytest.fixture
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[h.Harness]:
    name: str = request.param
    if name == "memory":
        built = h.memory()
        yield built
        await built.sender.close()
        return
    async with Running(h.sandbox_app(name)) as server:
        sim = h.Sim(server.url)
        try:
            if name == "telegram":
                built = await h.telegram(server, sim)
            elif name == "zalo":
                built = await h.zalo(server, sim, tmp_path)
            elif name == "facebook":
                built = await h.facebook(server, sim)
            else:
                built = await h.webhook(server, sim)
            assert not h.knobs_missing(built), h.knobs_missing(built)
            try:
                yield built
            finally:
                await built.sender.close()
        finally:
            await sim.close()
