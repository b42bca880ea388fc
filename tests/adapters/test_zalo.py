"""The Zalo OA adapter against the sandbox OA API: GMF, followers, uploads, tokens, errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.http import Reply
from adapters.sandbox.common import FaultConfig, Running
from adapters.sandbox.zalo import STATE, ZaloGroup, create_app
from adapters.zalo import ZaloSender, translate
from broadcaster.domain.errors import AuthFailed, PermanentError, RateLimited, TargetGone, TransientError
from broadcaster.domain.ports import Media, OAuthTokens, RenderedMessage, Target
from broadcaster.domain.secrets import Secret
from broadcaster.storage.token_store import FileTokenStore
from content.render import render

GROUP = Target("zalo", "f414c8f76fa586fbdfb4", "CNS_Xã Mù Cả")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def server() -> AsyncIterator[Running]:
    async with Running(create_app(auto_groups=False)) as running:
        running.app[STATE].groups[GROUP.external_id] = ZaloGroup("CNS_Xã Mù Cả", members=57)
        yield running


@pytest.fixture
async def store(server: Running, tmp_path: Path) -> FileTokenStore:
    pair = server.app[STATE].issue()
    store = FileTokenStore(tmp_path / "zalo-oa.json")
    await store.save(OAuthTokens(pair["access_token"], pair["refresh_token"], time.time() + 90_000))
    return store


def _sender(server: Running, store: FileTokenStore) -> ZaloSender:
    state = server.app[STATE]
    return ZaloSender(
        store,
        app_id=state.app_id,
        app_secret=Secret(state.app_secret),
        base_url=server.url,
        oauth_url=server.url,
    )


@pytest.fixture
async def sender(server: Running, store: FileTokenStore) -> AsyncIterator[ZaloSender]:
    s = _sender(server, store)
    yield s
    await s.close()


async def test_group_text_image_follower_and_members(server: Running, sender: ZaloSender) -> None:
    state = server.app[STATE]
    photo = Media("a" * 64, "anh.png", "image/png", PNG)
    message = render(
        "zalo", title="Thông báo", body="Chào {unit_name}", media=[photo], variables={"unit_name": "Xã Mù Cả"}
    )
    result = await sender.send(GROUP, message, "d1")
    assert len(result.message_ids) == 2
    assert state.messages[0]["message"] == {"text": "Thông báo\n\nChào Xã Mù Cả"}
    element = state.messages[1]["message"]["attachment"]["payload"]["elements"][0]
    assert element["attachment_id"] in state.attachments
    state.followers.add("2512523625412515")
    leader = Target("zalo", "2512523625412515", kind="user")
    await sender.send(leader, render("zalo", title="", body="Nhờ chuyển tiếp"), "r1")
    assert state.messages[-1]["user_id"] == "2512523625412515"
    assert await sender.member_count(GROUP) == 57
    with pytest.raises(PermanentError, match="cannot delete"):
        await sender.delete(GROUP, result.message_ids)


async def test_errors(server: Running, sender: ZaloSender) -> None:
    state = server.app[STATE]
    msg = render("zalo", title="", body="x")
    state.groups["off"] = ZaloGroup(status="disabled")
    with pytest.raises(TargetGone, match="-237 The group is disabled"):
        await sender.send(Target("zalo", "off"), msg, "k")
    with pytest.raises(TargetGone, match="-403 OA is not in group"):
        await sender.send(Target("zalo", "someone-elses"), msg, "k")
    with pytest.raises(TargetGone, match="-213"):
        await sender.send(Target("zalo", "42", kind="user"), msg, "k")
    too_long = RenderedMessage(parts=("x" * 2001,), fmt="plain", plain_parts=("x" * 2001,))
    with pytest.raises(PermanentError, match="-210"):
        await sender.send(GROUP, too_long, "k")
    big = Media("b" * 64, "to.png", "image/png", PNG + b"\x00" * (1024 * 1024))
    with pytest.raises(PermanentError, match="1 MB"):
        await sender.send(GROUP, RenderedMessage(parts=(), fmt="plain", plain_parts=(), media=(big,)), "k")
    state.per_minute = 2
    state.window = None
    await sender.member_count(GROUP)
    await sender.member_count(GROUP)
    with pytest.raises(RateLimited, match="-32") as limited:
        await sender.send(GROUP, msg, "k")
    assert limited.value.retry_after == 60
    state.per_minute = None
    for config in (FaultConfig(error_rate=1.0), FaultConfig(drop_rate=1.0)):
        state.faults.configure(config)
        with pytest.raises(TransientError):
            await sender.send(GROUP, msg, "k")
    state.faults.configure(FaultConfig())


async def test_expired_token_is_refreshed_once_and_persisted(server: Running, store: FileTokenStore) -> None:
    state = server.app[STATE]
    before = await store.load()
    assert before is not None
    state.clock_offset += 100_000  # every access token has expired on Zalo's side
    first, second = _sender(server, store), _sender(server, store)
    try:
        await asyncio.gather(
            first.send(GROUP, render("zalo", title="", body="a"), "k1"),
            second.send(GROUP, render("zalo", title="", body="b"), "k2"),
        )
    finally:
        await first.close()
        await second.close()
    after = await store.load()
    assert after is not None and after.refresh_token != before.refresh_token
    assert state.refreshes == 1  # two workers, one refresh: the second saw the new token
    assert before.refresh_token not in state.refresh  # single use: the old one is spent
    saved = json.loads(store.path.read_text())
    assert saved["refresh_token"] == after.refresh_token
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


async def test_spent_refresh_token_pauses_the_account(server: Running, store: FileTokenStore) -> None:
    state = server.app[STATE]
    current = await store.load()
    assert current is not None
    state.refresh.discard(current.refresh_token)  # someone else spent it
    state.clock_offset += 100_000
    sender = _sender(server, store)
    try:
        with pytest.raises(AuthFailed, match="re-authorise"):
            await sender.send(GROUP, render("zalo", title="", body="a"), "k")
    finally:
        await sender.close()
    assert await store.load() == current  # nothing overwritten by a failed refresh


def test_translation_table_without_sockets() -> None:
    def reply(body: object, status: int = 200) -> Reply:
        return Reply(status, {}, json.dumps(body).encode() if not isinstance(body, bytes) else body)

    assert translate(reply({"error": 0, "data": {}}), "x") is None
    expected = {
        -32: RateLimited,
        -211: RateLimited,
        -237: TargetGone,
        -403: TargetGone,
        -230: TargetGone,
        -216: AuthFailed,
        -224: AuthFailed,
        -204: AuthFailed,
        -200: TransientError,
        -210: PermanentError,
        -201: PermanentError,
        -248: PermanentError,
        -999: PermanentError,
    }
    for code, kind in expected.items():
        assert type(translate(reply({"error": code, "message": "m"}), "x")) is kind, code
    assert type(translate(reply(b"<html>502</html>"), "x")) is TransientError
    assert type(translate(reply({"error": 0}, status=502), "x")) is TransientError
    assert type(translate(reply({"data": {}}), "x")) is TransientError


async def test_an_oauth_server_that_cannot_answer_does_not_pause_the_account(
    server: Running, store: FileTokenStore
) -> None:
    """A 503 from the OAuth endpoint did not spend the refresh token: the refresh is tried again (and
    succeeds); an endpoint down for longer is a TransientError (retried later), never AuthFailed."""
    state = server.app[STATE]
    before = await store.load()
    assert before is not None
    state.clock_offset += 100_000
    state.faults.configure(FaultConfig(burst_every=1, burst_length=1, paths=("/access_token",), limit=1))
    sender = _sender(server, store)
    try:
        await sender.send(GROUP, render("zalo", title="", body="a"), "k1")
        assert state.faults.injected == {"burst": 1} and state.refreshes == 1
        after = await store.load()
        assert after is not None and after.refresh_token != before.refresh_token
        state.clock_offset += 100_000
        state.faults.configure(FaultConfig(error_rate=1.0, paths=("/access_token",)))
        with pytest.raises(TransientError, match="token refresh"):
            await sender.send(GROUP, render("zalo", title="", body="b"), "k2")
        assert state.faults.injected == {"error": 3}  # three tries, then given back
        assert await store.load() == after  # the pair is kept: the next refresh can still use it
    finally:
        await sender.close()
