"""Commands acting on many groups (`cns recall`, `cns correct`, `cns report post`) print every group's
outcome and then exit 1, with a one-line reason on stderr, when any group failed: the README's rule
("1 on a refused or failed operation"). Here every platform call fails (the accounts point at a closed
port), as when a bridge or the Bot API is down: 10 of 10 groups failed must not exit 0."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from broadcaster.bootstrap import initialise
from broadcaster.directory import accounts, groups
from broadcaster.dispatch import planning
from broadcaster.domain.models import Delivery
from broadcaster.domain.settings import Settings
from broadcaster.domain.sqltypes import utcnow
from broadcaster.editorial import workflow
from broadcaster.reports.monthly import LOCAL
from tests.cli.test_cli import Cns
from tests.helpers import TODAY, actor, add_users, seed_lai_chau

UNITS = ["12", "03451", *(f"03451-0{n}" for n in range(1, 9))]  # the province, a commune, 8 villages


def _closed_port() -> int:
    """A local port nothing listens on: every request is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _world(database_url: str, base_url: str) -> None:
    """10 webhook groups (one per unit, the province's and the commune's being steering groups) with a
    sent post, its content re-approved at revision 2 so that it can be corrected."""
    app, _, _ = await initialise(Settings(database_url=database_url))
    try:
        await seed_lai_chau(app)
        await add_users(app, [("ed", "editor", None), ("ap", "approver", None)])
        admin = await actor(app, "admin")
        async with app.transaction() as s:
            await accounts.add_account(
                s, admin, "hook", "webhook", secret_ref="env:T_HOOK", settings={"base_url": base_url}
            )
            for n, unit in enumerate(UNITS):
                await groups.add_group(
                    s,
                    admin,
                    unit_code=unit,
                    account_name="hook",
                    external_id=f"g{n}",
                    title=f"G{n}",
                    today=TODAY,
                )
        ed, ap = await actor(app, "ed"), await actor(app, "ap")
        async with app.transaction() as s:
            item, _ = await workflow.create(
                s, ed, title="Tin", body="Chào {unit_name}", category="x", max_bytes=1
            )
            content_id = item.id or 0
            await workflow.submit(s, ed, content_id)
        async with app.transaction() as s:
            await workflow.approve(s, ap, content_id)
        async with app.transaction() as s:
            await planning.plan(s, ed, content_id, ["12"])
            await s.execute(
                update(Delivery).values(
                    state="sent", message_ids=["m1"], external_message_id="m1", sent_at=utcnow()
                )
            )
        async with app.transaction() as s:
            await workflow.edit(s, ed, content_id, body="Chào {unit_name}, đã sửa", max_bytes=1)
            await workflow.submit(s, ed, content_id)
        async with app.transaction() as s:
            await workflow.approve(s, ap, content_id)
    finally:
        await app.close()


@pytest.fixture
def cns(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cns:
    monkeypatch.setenv("T_HOOK", "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    for name in ("CNS_USER", "CNS_PUBLIC_URL", "CNS_SECRETS_FILE"):
        monkeypatch.delenv(name, raising=False)
    db = f"sqlite:///{tmp_path}/exit.db"
    asyncio.run(_world(db, f"http://127.0.0.1:{_closed_port()}"))
    return Cns(db, capsys)


def test_correct_exits_1_when_every_group_failed(cns: Cns) -> None:
    done = cns("--json", "--as", "ed", "correct", "1")
    report = done.json()
    assert report["failed"] == 10 and report["edited"] == 0  # type: ignore[index]  # printed all the same
    assert done.code == 1
    assert done.err.splitlines() == ["cns: error: correction of dispatch 1: 10 of 10 groups failed"]
    text = cns("--as", "ed", "correct", "1")
    assert text.code == 1 and "10 failed" in text.out and "error: group 'G0': webhook edit" in text.out


def test_recall_exits_1_while_any_group_fails(cns: Cns) -> None:
    done = cns("--json", "--as", "ed", "recall", "1")
    assert done.json()["failed"] == 10  # type: ignore[index]
    assert done.code == 1
    assert done.err.splitlines() == [
        "cns: error: recall of dispatch 1: 10 of 10 groups failed; run `cns recall 1` again to retry them"
    ]
    asyncio.run(_mark_recalled(cns.db, keep=1))  # nine taken back by hand meanwhile; one still fails
    again = cns("--as", "ed", "recall", "1")
    assert again.code == 1 and "1 of 1 groups failed" in again.err
    asyncio.run(_mark_recalled(cns.db, keep=0))
    last = cns("--as", "ed", "recall", "1")
    assert last.code == 1 and "already recalled" in last.err  # refused: nothing left to take back


def test_report_post_exits_1_when_a_steering_group_failed(cns: Cns) -> None:
    month = f"{datetime.now(LOCAL):%Y-%m}"
    done = cns("--json", "--as", "ed", "report", "post", "--month", month)
    assert done.json() == {"groups": 2, "sent": 0, "failed": 2, "refused": 0, "already": 0}
    assert done.code == 1
    assert done.err.splitlines()[-1].startswith(f"cns: error: monthly summary {month}: 2 of 2 groups failed")
    dry = cns("--as", "ed", "report", "post", "--month", month, "--dry-run")
    assert dry.code == 0  # nothing is sent: nothing can fail


async def _mark_recalled(database_url: str, keep: int) -> None:
    """As if the platform's messages had been removed by hand: all but ``keep`` deliveries recalled."""
    from broadcaster.storage.app import App

    app = await App.open(Settings(database_url=database_url))
    try:
        async with app.transaction() as s:
            ids = (
                await s.execute(
                    select(col(Delivery.id)).where(col(Delivery.state) == "sent").order_by(col(Delivery.id))
                )
            ).scalars()
            await s.execute(
                update(Delivery).where(col(Delivery.id).in_(list(ids)[keep:])).values(state="recalled")
            )
    finally:
        await app.close()
