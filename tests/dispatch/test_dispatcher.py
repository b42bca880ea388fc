"""The outbox dispatcher with in-memory platforms: outcomes, retry policy, side effects, crash recovery."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from adapters.memory import MemorySender
from adapters.relay import RelaySender
from broadcaster.directory import groups
from broadcaster.dispatch import planning
from broadcaster.dispatch.dispatcher import Dispatcher
from broadcaster.dispatch.retry import RetryPolicy
from broadcaster.domain.errors import (
    AuthFailed,
    PermanentError,
    RateLimited,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.models import Account, Alert, ChatGroup, Delivery, Dispatch
from broadcaster.domain.sqltypes import utcnow
from broadcaster.editorial import workflow
from broadcaster.storage.app import App
from content.render import render_revision
from tests.helpers import TODAY, actor, add_accounts, add_users, seed_lai_chau, write

GROUPS = """unit_code,account,external_id,title,mode,admins
12,tg,-1001,CNS_tỉnh Lai Châu,,
03451,tg,-1002,CNS_Xã Mù Cả,,
03451,zalo,gmf-1,CNS_Xã Mù Cả,,
03451-01,zalo,relay-1,CNS_Bản Mù Cả_Xã Mù Cả,relay,Lò Văn Pọm=telegram:555
03451-02,hook,m-2,CNS_Bản Tó Khò_Xã Mù Cả,,
"""


class Clock:
    """Frozen at ``now`` (tests move it by hand), or real time shifted by ``now - start`` when not frozen."""

    def __init__(self, frozen: bool = True) -> None:
        self.start = self.now = utcnow()
        self.frozen = frozen

    def __call__(self) -> datetime:
        return self.now if self.frozen else utcnow() + (self.now - self.start)


async def _world(app: App, tmp_path: Path) -> int:
    await seed_lai_chau(app)
    await add_accounts(app)
    await add_users(app, [("ed", "editor", None), ("ap", "approver", None)])
    admin = await actor(app, "admin")
    async with app.transaction() as s:
        await groups.import_groups(s, admin, write(tmp_path / "g.csv", GROUPS), TODAY)
    ed, ap = await actor(app, "ed"), await actor(app, "ap")
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s, ed, title="Tin", body="Chào {unit_name}", category="x", max_bytes=1
        )
        await workflow.submit(s, ed, item.id or 0)
    async with app.transaction() as s:
        await workflow.approve(s, ap, item.id or 0)
        return (await planning.plan(s, ed, item.id or 0, ["12"])).dispatch_id


def _dispatcher(
    app: App, platforms: dict[str, MemorySender], clock: Clock | None = None, **kw: object
) -> Dispatcher:
    # With a frozen clock nothing may wait for real time: a delivery held by a bucket is given back instead.
    kw.setdefault("max_rate_wait", 0.0 if clock is not None and clock.frozen else 5.0)
    return Dispatcher(
        app,
        senders=lambda account: platforms[account.platform],
        render=render_revision,
        relay=lambda channels: RelaySender(channels, lambda key: f"https://x/r/{key}"),
        clock=clock or utcnow,
        policy=kw.pop("policy", RetryPolicy(initial=1, maximum=1, jitter=0)),
        **kw,
    )  # type: ignore[arg-type]


def _memories() -> dict[str, MemorySender]:
    return {p: MemorySender(p) for p in ("telegram", "zalo", "facebook", "webhook")}


async def _states(app: App) -> dict[str, int]:
    async with app.transaction() as s:
        rows = await s.execute(select(Delivery.state, func.count()).group_by(Delivery.state))  # type: ignore[call-overload]
        return dict(rows.all())


async def test_every_delivery_is_sent_once(app: App, tmp_path: Path) -> None:
    dispatch_id = await _world(app, tmp_path)
    platforms = _memories()
    stats = await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    assert await _states(app) == {"sent": 4, "awaiting_confirmation": 1}
    assert stats.sent == 5 and stats.failed == 0
    assert sorted(platforms["telegram"].sent) == ["-1001", "-1002", "555"]  # 555: the relay admin
    assert platforms["telegram"].sent["-1002"][0].parts[0] == "<b>Tin</b>\n\nChào Xã Mù Cả"
    assert len(platforms["telegram"].keys) == len(set(platforms["telegram"].keys))
    async with app.transaction() as s:
        dispatch = await s.get(Dispatch, dispatch_id)
        sent = (await s.execute(select(Delivery).where(Delivery.state == "sent"))).scalars().all()  # type: ignore[arg-type]
    assert dispatch is not None and dispatch.status == "done"
    assert all(d.message_ids and d.sent_at and d.lease_owner is None and d.attempts == 1 for d in sent)


async def test_retry_policy_from_error_types(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    platforms = _memories()
    clock = Clock()
    platforms["telegram"].fail_next(RateLimited("tg 429", 7))
    platforms["zalo"].fail_next(TransientError("zalo 502"))
    platforms["webhook"].fail_next(PermanentError("hook 422"))
    worker = _dispatcher(app, platforms, clock)
    await worker.run_batch()
    async with app.transaction() as s:
        gids = {g.external_id: g.id for g in (await s.execute(select(ChatGroup))).scalars()}
        rows = {d.group_id: d for d in (await s.execute(select(Delivery))).scalars()}
    limited, held, flaky, refused = (rows[gids[e]] for e in ("-1001", "-1002", "gmf-1", "m-2"))
    assert (limited.state, limited.attempts) == ("errored", 0)  # a rate limit is not an attempt
    assert limited.next_attempt_at == clock.now + timedelta(seconds=7)  # retry_after honoured exactly
    # the platform's wait holds the bot's other posts too, without charging them an attempt
    assert (held.state, held.attempts, held.next_attempt_at) == (
        "errored",
        0,
        clock.now + timedelta(seconds=7),
    )
    assert (flaky.state, flaky.attempts) == ("errored", 1)
    assert flaky.next_attempt_at == clock.now + timedelta(seconds=1)  # backoff after attempt 1
    assert (refused.state, refused.last_error) == ("failed", "hook 422")
    assert await worker.run_batch() == 0  # nothing due until the clock moves
    clock.now += timedelta(seconds=6)
    for _ in range(9):  # before the 7 s are up (6.9 s), the zalo retry goes; neither telegram post does
        clock.now += timedelta(milliseconds=100)
        await worker.run_batch()
    assert (await _states(app)).get("sent", 0) == 1
    clock.now += timedelta(seconds=1)
    for _ in range(10):
        clock.now += timedelta(milliseconds=100)
        await worker.run_batch()
    assert await _states(app) == {"sent": 3, "failed": 1, "awaiting_confirmation": 1}


async def test_transient_errors_stop_after_max_attempts(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    platforms = _memories()
    clock = Clock()
    platforms["webhook"].fail_next(*(TransientError("hook 503") for _ in range(10)))
    worker = _dispatcher(
        app, platforms, clock, policy=RetryPolicy(max_attempts=3, initial=1, maximum=1, jitter=0)
    )
    for _ in range(5):
        await worker.run_batch()
        clock.now += timedelta(seconds=2)
    async with app.transaction() as s:
        hook = (await s.execute(select(Delivery).where(Delivery.platform == "webhook"))).scalar_one()  # type: ignore[arg-type]
    assert (hook.state, hook.attempts, hook.last_error) == ("failed", 3, "hook 503")


async def test_gone_migrated_and_paused(app: App, tmp_path: Path) -> None:
    dispatch_id = await _world(app, tmp_path)
    platforms = _memories()
    platforms["telegram"].fail_next(TargetMigrated("upgraded", "-100999"), TargetGone("kicked"))
    platforms["webhook"].fail_next(AuthFailed("401 bad_signature"))
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    async with app.transaction() as s:
        by_ext = {g.external_id: g for g in (await s.execute(select(ChatGroup))).scalars()}
        alerts = {a.kind for a in (await s.execute(select(Alert))).scalars()}
        hook = (await s.execute(select(Account).where(Account.platform == "webhook"))).scalar_one()  # type: ignore[arg-type]
    assert "-100999" in by_ext and "-1001" not in by_ext  # the group's id was updated...
    assert platforms["telegram"].sent.get("-100999")  # ...and the post re-sent there
    assert by_ext["-1002"].status == "unreachable"
    assert (hook.status, hook.paused_reason) == ("paused", "401 bad_signature")
    assert alerts == {"group_migrated", "group_unreachable", "account_paused"}
    states = await _states(app)
    assert states["queued"] == 1 and states["failed"] == 1  # held while paused; kicked
    async with app.transaction() as s:  # an admin fixes the account: the held delivery goes out
        await s.execute(update(Account).where(Account.platform == "webhook").values(status="active"))  # type: ignore[arg-type]
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    assert "queued" not in await _states(app)
    async with app.transaction() as s:
        assert (await s.get(Dispatch, dispatch_id)).status == "done"  # type: ignore[union-attr]


@pytest.mark.parametrize("concurrency", [2, 5])
async def test_a_send_keeps_its_slot_until_its_outcome_is_committed(
    app: App, tmp_path: Path, concurrency: int
) -> None:
    """The crash bound: sent but not yet committed (what a kill would send again) never exceeds the
    concurrency, however slow the commits; sends finishing during a commit go together in the next."""
    await _world(app, tmp_path)

    class SlowDatabase(Dispatcher):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sent = self.committed = self.peak = 0
            self.commits: list[int] = []

        async def _send_one(self, *args: Any, **kwargs: Any) -> Any:
            outcome = await super()._send_one(*args, **kwargs)
            self.sent += 1
            self.peak = max(self.peak, self.sent - self.committed)
            return outcome

        async def commit(self, outcomes: Any, start: Any = ()) -> None:
            await asyncio.sleep(0.2)  # a slow database
            await super().commit(outcomes, start)
            self.committed += len(outcomes)
            if outcomes:
                self.commits.append(len(outcomes))

    platforms = _memories()
    worker = SlowDatabase(
        app,
        senders=lambda account: platforms[account.platform],
        render=render_revision,
        relay=lambda channels: RelaySender(channels, lambda key: f"https://x/r/{key}"),
        concurrency=concurrency,
        batch=2,  # overlapping batches share the slots
    )
    stats = await worker.run(asyncio.Event(), until_idle=True)
    assert stats.sent == 5 and worker.committed == 5
    assert worker.peak <= concurrency
    if concurrency == 5:  # the first outcome is committed alone, the others (other accounts) meanwhile
        assert len(worker.commits) < 5 and max(worker.commits) >= 2


async def test_crash_leaves_unknown_then_resent_and_counted(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    platforms = _memories()
    clock = Clock(frozen=False)
    dead = _dispatcher(app, platforms, clock, lease_seconds=30, worker_id="dead")
    claimed = await dead.claim()
    assert len(claimed) == 5
    # ... three requests start (marked before they leave), then the worker dies before any outcome
    await dead.commit([], start=[c.delivery_id for c in claimed[:3]])
    assert await _states(app) == {"sending": 5}
    survivor = _dispatcher(app, platforms, clock, worker_id="alive")
    assert await survivor.recover() == 0  # leases still valid: not touched
    clock.now += timedelta(seconds=31)
    assert await survivor.recover() == 5
    # maybe sent: unknown; never handed to a sender: simply waiting again, not a possible duplicate
    assert await _states(app) == {"unknown": 3, "queued": 2}
    await survivor.run(asyncio.Event(), until_idle=True)
    async with app.transaction() as s:
        resent = (await s.execute(select(func.sum(Delivery.resent_unknown)))).scalar_one()  # type: ignore[arg-type]
        attempts = (await s.execute(select(func.max(Delivery.attempts)))).scalar_one()  # type: ignore[arg-type]
    assert resent == 3 and (await _states(app)) == {"sent": 4, "awaiting_confirmation": 1}
    assert attempts == 2  # the started ones: tried twice; the others once
    held = _dispatcher(app, platforms, clock, unknown_policy="hold")
    assert held.unknown_policy == "hold"


async def test_concurrent_workers_never_claim_the_same_row(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    workers = [_dispatcher(app, _memories(), worker_id=f"w{i}", batch=10) for i in range(3)]
    claims = await asyncio.gather(*(w.claim() for w in workers))
    ids = [c[0] for claim in claims for c in claim]
    assert len(ids) == len(set(ids)) == 5
    # each account is served by one worker at a time (its lease), so its rate limit holds across workers
    held = [w.queue.accounts for w in workers]
    assert sum(len(h) for h in held) == len(set().union(*held)) == 4


async def test_account_lease_is_taken_over_when_its_worker_dies(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    clock = Clock()
    first = _dispatcher(app, _memories(), clock, worker_id="first", lease_seconds=30)
    second = _dispatcher(app, _memories(), clock, worker_id="second", lease_seconds=30)
    assert len(await first.hold_accounts()) == 4
    assert await second.hold_accounts() == set()  # all taken, and the first worker is alive
    clock.now += timedelta(seconds=31)  # ... until its leases run out
    assert len(await second.hold_accounts()) == 4
    assert await first.hold_accounts() == set()


async def test_stop_releases_what_was_not_started(app: App, tmp_path: Path) -> None:
    await _world(app, tmp_path)
    worker = _dispatcher(app, _memories(), worker_id="w")
    await worker.claim()
    await worker.release()
    async with app.transaction() as s:
        rows = (await s.execute(select(Delivery))).scalars().all()
    assert {(d.state, d.attempts, d.lease_owner) for d in rows} == {("queued", 0, None)}


@pytest.mark.parametrize("status", ["paused", "cancelled"])
async def test_paused_or_cancelled_dispatch_is_not_sent(app: App, tmp_path: Path, status: str) -> None:
    dispatch_id = await _world(app, tmp_path)
    async with app.transaction() as s:
        await s.execute(update(Dispatch).where(Dispatch.id == dispatch_id).values(status=status))  # type: ignore[arg-type]
    platforms = _memories()
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    assert not any(m.sent for m in platforms.values())


async def test_recall_deletes_marks_and_tells_admins(app: App, tmp_path: Path) -> None:
    from broadcaster.dispatch.recall import recall
    from broadcaster.domain.errors import WorkflowError

    dispatch_id = await _world(app, tmp_path)
    platforms = _memories()
    platforms["zalo"].can_delete = False  # as Zalo OA: group messages cannot be deleted
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    ed = await actor(app, "ed")
    relay = lambda channels: RelaySender(channels, lambda key: f"https://x/r/{key}")  # noqa: E731
    report = await recall(app, ed, dispatch_id, senders=lambda a: platforms[a.platform], relay=relay)
    assert (report.deleted, report.admins_told, report.not_deletable, report.failed) == (3, 1, 1, 0)
    assert report.by_platform["zalo"] == {"cannot delete": 1, "admins told": 1}
    assert await _states(app) == {"recalled": 5}
    assert len(platforms["telegram"].deleted) == 2 and len(platforms["webhook"].deleted) == 1
    notice = platforms["telegram"].sent["555"][-1].parts[0]  # the relay admin, reached on Telegram
    assert "được thu hồi" in notice
    async with app.transaction() as s:
        zalo = (
            await s.execute(select(Delivery).where(Delivery.platform == "zalo", Delivery.mode == "direct"))
        ).scalar_one()  # type: ignore[arg-type]
        assert zalo.last_error is not None and zalo.last_error.startswith("recalled, NOT deleted")
    with pytest.raises(WorkflowError, match="already recalled"):
        await recall(app, ed, dispatch_id, senders=lambda a: platforms[a.platform], relay=relay)


async def test_correction_edits_where_possible_else_posts_a_correction(app: App, tmp_path: Path) -> None:
    from broadcaster.dispatch.correction import correct
    from broadcaster.domain.errors import WorkflowError

    dispatch_id = await _world(app, tmp_path)
    platforms = _memories()
    platforms["zalo"].can_edit = False  # as Zalo OA
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    ed, ap = await actor(app, "ed"), await actor(app, "ap")
    relay = lambda channels: RelaySender(channels, lambda key: f"https://x/r/{key}")  # noqa: E731

    async def fix() -> object:
        return await correct(
            app, ed, dispatch_id, senders=lambda a: platforms[a.platform], relay=relay, render=render_revision
        )

    with pytest.raises(WorkflowError, match="have the new revision approved"):
        await fix()
    async with app.transaction() as s:
        await workflow.edit(s, ed, 1, body="Chào {unit_name}, giờ làm việc từ 7:30", max_bytes=1)
        await workflow.submit(s, ed, 1)
    async with app.transaction() as s:
        await workflow.approve(s, ap, 1)
    report = await fix()
    assert (report.edited, report.correction_posts, report.admins_told, report.failed) == (3, 1, 1, 0)  # type: ignore[attr-defined]
    edited = next(iter(platforms["telegram"].edits.values()))[0]
    assert "giờ làm việc từ 7:30" in edited.parts[0]
    posted = platforms["zalo"].sent["gmf-1"][-1]
    assert posted.parts[0].startswith("Đính chính: Tin\n\nChào Xã Mù Cả, giờ làm việc từ 7:30")


async def test_quiet_hours_hold_back_what_was_not_sent_in_time(app: App, tmp_path: Path) -> None:
    """A broadcast running late (or a retry) must not reach people at night: the dispatch's own quiet
    hours are checked at send time too, tier by tier, and held deliveries go at the end of them."""
    from broadcaster.domain.timeutil import LOCAL_TZ
    from scheduler.timing import quiet_resume

    dispatch_id = await _world(app, tmp_path)
    async with app.transaction() as s:
        await s.execute(
            update(Dispatch)
            .where(Dispatch.id == dispatch_id)  # type: ignore[arg-type]
            .values(quiet_hours="21:00-06:00,province=off,village=20:00-07:00")
        )
    clock = Clock()
    # Tomorrow 22:30, so the dispatch (planned now) is due whatever the time of the run.
    night = (datetime.now(LOCAL_TZ) + timedelta(days=1)).replace(hour=22, minute=30, second=0, microsecond=0)
    clock.now = night.astimezone(utcnow().tzinfo)
    platforms = _memories()
    await _dispatcher(app, platforms, clock, quiet=quiet_resume).run(asyncio.Event(), until_idle=True)
    assert sorted(platforms["telegram"].sent) == ["-1001"]  # the province: no quiet hours
    async with app.transaction() as s:
        held = {
            d.level: (d.state, d.attempts, d.next_attempt_at, d.last_error)
            for d in (await s.execute(select(Delivery).where(Delivery.state == "queued"))).scalars()  # type: ignore[arg-type]
        }
    morning = night + timedelta(days=1)
    assert held["commune"][:3] == ("queued", 0, morning.replace(hour=6, minute=0))
    assert held["village"][:3] == ("queued", 0, morning.replace(hour=7, minute=0))
    assert held["commune"][3] == f"quiet hours until 06:00 {morning:%d/%m}"
    from broadcaster.dispatch import control as dispatch_control

    async with app.transaction() as s:
        shown = await dispatch_control.status(s, dispatch_id)
    assert shown.quiet_hours_held == 4  # two communes, two villages
    assert shown.quiet_hours_resume is not None
    assert shown.quiet_hours_resume.isoformat() == morning.replace(hour=6, minute=0).isoformat()

    clock.now = morning.replace(hour=6, minute=1)  # communes may go; villages wait until 07:00
    await _dispatcher(app, platforms, clock, quiet=quiet_resume).run(asyncio.Event(), until_idle=True)
    assert await _states(app) == {"sent": 3, "queued": 2}
    clock.now = morning.replace(hour=7, minute=0)
    await _dispatcher(app, platforms, clock, quiet=quiet_resume).run(asyncio.Event(), until_idle=True)
    assert await _states(app) == {"sent": 4, "awaiting_confirmation": 1}


async def test_recall_waits_out_429s_and_a_second_run_retries_what_failed(app: App, tmp_path: Path) -> None:
    from broadcaster.dispatch.recall import recall
    from broadcaster.domain.errors import WorkflowError

    dispatch_id = await _world(app, tmp_path)
    platforms = _memories()
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    ed = await actor(app, "ed")
    relay = lambda channels: RelaySender(channels, lambda key: f"https://x/r/{key}")  # noqa: E731
    platforms["telegram"].fail_next(RateLimited("tg 429", 0.2))  # waited out, then deleted
    platforms["webhook"].fail_next(TransientError("bridge 502"))  # not a rate limit: reported failed

    first = await recall(app, ed, dispatch_id, senders=lambda a: platforms[a.platform], relay=relay)
    assert (first.deleted, first.failed) == (3, 1) and "bridge 502" in first.errors[0]
    assert await _states(app) == {"recalled": 4, "sent": 1}
    assert len(platforms["telegram"].deleted) == 2

    again = await recall(app, ed, dispatch_id, senders=lambda a: platforms[a.platform], relay=relay)
    assert (again.deleted, again.failed, again.skipped) == (1, 0, 0)  # only the one that failed
    assert await _states(app) == {"recalled": 5}
    with pytest.raises(WorkflowError, match="nothing is left"):
        await recall(app, ed, dispatch_id, senders=lambda a: platforms[a.platform], relay=relay)


async def test_an_account_paused_mid_run_lets_its_sends_in_flight_finish(app: App, tmp_path: Path) -> None:
    """A refused credential pauses the account, but its adapter (and the HTTP session it shares) stays
    open for the sends already in flight: they finish and are counted, and nothing is torn down under
    them ("Session is closed" lost sends before)."""
    await _world(app, tmp_path)

    class Shared(MemorySender):
        async def send(self, target: Any, message: Any, key: str) -> Any:
            if target.external_id == "-1001":
                raise AuthFailed("401 Unauthorized")
            await asyncio.sleep(0.3)  # still in flight when the refusal is committed
            if self.closed:
                raise TransientError("Session is closed")
            return await super().send(target, message, key)

    platforms = _memories()
    platforms["telegram"] = Shared("telegram")
    worker = _dispatcher(app, platforms, concurrency=8)
    await worker.run(asyncio.Event(), until_idle=True)
    async with app.transaction() as s:
        rows = (await s.execute(select(ChatGroup.external_id, Delivery.state).join(Delivery))).all()  # type: ignore[call-overload]
    states = dict(rows)
    assert states["-1001"] == "queued" and states["-1002"] == "sent"
    assert platforms["telegram"].closed  # closed once the worker stopped


async def test_a_webhook_key_that_cannot_be_decoded_pauses_the_account(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whsec_ key that is not base64 is a configuration error: the account is paused with an alert at
    the first send, its delivery held; never six retries of "internal error: SignatureError"."""
    from broadcaster.bootstrap import build_sender

    await _world(app, tmp_path)
    monkeypatch.setenv("CNS_TEST_WEBHOOK", "whsec_not base64!")  # set after the account was added
    platforms = _memories()

    def senders(account: Account) -> Any:
        return (
            build_sender(account, app.settings)
            if account.platform == "webhook"
            else platforms[account.platform]
        )

    worker = Dispatcher(
        app,
        senders=senders,
        render=render_revision,
        relay=lambda channels: RelaySender(channels, lambda key: f"https://x/r/{key}"),
    )
    await worker.run(asyncio.Event(), until_idle=True)
    async with app.transaction() as s:
        hook = (await s.execute(select(Account).where(Account.platform == "webhook"))).scalar_one()  # type: ignore[arg-type]
        alerts = [a.kind for a in (await s.execute(select(Alert))).scalars()]
        held = (
            await s.execute(select(Delivery).where(Delivery.platform == "webhook"))  # type: ignore[arg-type]
        ).scalar_one()
    assert hook.status == "paused" and "whsec_ followed by base64" in (hook.paused_reason or "")
    assert alerts == ["account_paused"]
    assert (held.state, held.attempts) == ("queued", 0)


async def test_a_relay_package_that_broke_off_resumes_and_recall_takes_back_the_parts(
    app: App, tmp_path: Path
) -> None:
    """The relay package to an admin is three messages (note, post, link). A 503 on the second: the
    first is kept with the delivery, and the retry sends the second and third only, so the admin gets
    each once (before: the whole package again). A post that broke off is taken back on recall."""
    dispatch_id = await _world(app, tmp_path)
    platforms = _memories()
    admin_channel = platforms["telegram"]
    admin_channel.fail_after(1, TransientError("telegram: HTTP 503"))
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    to_admin = [p for p in admin_channel.messages.values() if p.target == "555"]
    assert len(to_admin) == 3 and len({p.text for p in to_admin}) == 3  # each message once
    assert to_admin[0].text is not None and to_admin[0].text.startswith("Kính gửi Lò Văn Pọm")
    async with app.transaction() as s:
        relay = (await s.execute(select(Delivery).where(Delivery.mode == "relay"))).scalar_one()  # type: ignore[arg-type]
    assert relay.state == "awaiting_confirmation" and relay.attempts == 2
    assert len(relay.message_ids) == 3 and all(i.startswith("telegram:555:") for i in relay.message_ids)

    # A direct post that broke off and was then recalled: its first part is deleted too.
    async with app.transaction() as s:
        direct = (await s.execute(select(Delivery).where(Delivery.platform == "webhook"))).scalar_one()  # type: ignore[arg-type]
        direct.state, direct.message_ids = "errored", ["part-1"]
    from broadcaster.dispatch.recall import recall

    report = await recall(
        app,
        await actor(app, "ed"),
        dispatch_id,
        senders=lambda account: platforms[account.platform],
        relay=lambda channels: RelaySender(channels, lambda key: f"https://x/r/{key}"),
    )
    assert "part-1" in platforms["webhook"].deleted  # the part in the group is taken back
    assert report.skipped == 1 and report.by_platform["webhook"] == {"deleted": 1}


async def test_a_rate_lowered_by_429s_is_remembered_for_the_next_worker(app: App, tmp_path: Path) -> None:
    """The pace a platform allowed (learned from its 429) is kept per account, so the next worker starts
    there instead of learning it again with more 429s."""
    await _world(app, tmp_path)
    platforms = _memories()
    platforms["telegram"].fail_next(RateLimited("telegram: 429", 0.1))
    first = _dispatcher(app, platforms)
    await first.run(asyncio.Event(), until_idle=True)
    async with app.transaction() as s:
        tg = (await s.execute(select(Account).where(Account.platform == "telegram"))).scalar_one()  # type: ignore[arg-type]
    learned = first.limits.accounts[tg.id or 0].rate  # type: ignore[index]
    assert learned < 30 * 0.97
    second = _dispatcher(app, _memories())
    await second.run(asyncio.Event(), until_idle=True)
    assert second.limits.learned[tg.id or 0] == pytest.approx(learned, rel=0.01)


async def test_one_unreachable_relay_admin_does_not_make_the_group_unreachable(
    app: App, tmp_path: Path
) -> None:
    """Each relay admin's channel has its own status: an admin who unfollowed is marked unreachable (and
    an alert says so) while the group keeps getting posts through the others; only when no admin can be
    reached is the group unreachable (and the next dispatch says it left it out)."""
    await _world(app, tmp_path)
    async with app.transaction() as s:
        relay = (await s.execute(select(ChatGroup).where(ChatGroup.mode == "relay"))).scalar_one()  # type: ignore[arg-type]
        relay.admins = [
            {"name": "Lò Văn Pọm", "channel": "telegram", "address": "555"},
            {"name": "Tao Thị Hoa", "channel": "webhook", "address": "777"},
        ]
    platforms = _memories()
    platforms["telegram"].gone.add("555")  # Pọm blocked the bot
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    async with app.transaction() as s:
        group = await s.get(ChatGroup, relay.id)
        alerts = [a.kind for a in (await s.execute(select(Alert))).scalars()]
        delivery = (await s.execute(select(Delivery).where(Delivery.group_id == relay.id))).scalar_one()  # type: ignore[arg-type]
    assert group is not None and group.status == "active"
    assert [a.get("status", "active") for a in group.admins] == ["unreachable", "active"]
    assert alerts == ["relay_admin_unreachable"]
    assert delivery.state == "awaiting_confirmation" and platforms["webhook"].sent.get("777")

    platforms["webhook"].gone.add("777")  # now the last admin too
    async with app.transaction() as s:
        await s.execute(update(Delivery).where(Delivery.group_id == relay.id).values(state="queued"))  # type: ignore[arg-type]
        await s.execute(update(Dispatch).values(status="running"))  # a reminder round, say
    await _dispatcher(app, platforms).run(asyncio.Event(), until_idle=True)
    async with app.transaction() as s:
        group = await s.get(ChatGroup, relay.id)
    assert group is not None and group.status == "unreachable"
