"""``cns demo``: the whole foundation on embedded defaults, in a fresh SQLite database.

It imports the real Lai Châu structures (2022, then the 2025 reform with its mapping), the village sample
and generated villages, registers accounts and groups on every tier and platform (village groups mostly
in relay mode, as real village Zalo groups cannot be reached by any API), adds users, writes and
approves a guidance post and plans its dispatch to every tier. Sending is not part of this release.
"""

from __future__ import annotations

import asyncio
import csv
import json
import secrets as secrets_module
import socket
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select
from sqlmodel import col

from adapters.sandbox import facebook as fb_box
from adapters.sandbox import telegram as tg_box
from adapters.sandbox import webhook_gateway as wh_box
from adapters.sandbox import zalo as zalo_box
from adapters.sandbox.run import DEMO_PAGE, SandboxConfig, Sandboxes
from broadcaster.bootstrap import initialise, make_dispatcher, make_web_app, register_webhook
from broadcaster.directory import accounts, groups, users
from broadcaster.directory.group_check import check_groups
from broadcaster.directory.groups import GroupImport
from broadcaster.dispatch import control as dispatch_control
from broadcaster.dispatch import planning
from broadcaster.dispatch.planning import PlanResult
from broadcaster.domain.models import ChatGroup, Delivery, InboundEvent, pk
from broadcaster.domain.ports import OAuthTokens
from broadcaster.domain.results import renamed
from broadcaster.domain.settings import Settings
from broadcaster.domain.states import (
    EVENT_UNPROCESSED,
    SEND_SUCCEEDED,
    ContentStatus,
    DeliveryState,
    GroupMode,
)
from broadcaster.domain.timeutil import today
from broadcaster.editorial import workflow
from broadcaster.inbound.links import confirmation_token, link_tracker
from broadcaster.reports import monthly as reports
from broadcaster.reports.monthly import Totals, UnitFigures
from broadcaster.storage.app import App
from broadcaster.storage.token_store import FileTokenStore
from broadcaster.units.aliases import import_aliases
from broadcaster.units.importer import ImportReport, import_units
from broadcaster.units.tree import UnitRef, load_tree

REFORM = date(2025, 7, 1)
VILLAGES_PER_COMMUNE = (3, 4, 5)
SAMPLE_POST = """Bà con {unit_name} ơi, từ nay có thể **nộp hồ sơ trực tuyến**
trên Cổng Dịch vụ công quốc gia,
không cần đến trụ sở xã.

Các bước:
1. Cài ứng dụng VNeID và kích hoạt tài khoản định danh mức 2.
2. Vào https://dichvucong.gov.vn và chọn *Đăng nhập bằng VNeID*.
3. Chọn thủ tục, điền thông tin và nộp hồ sơ.

Cần hỗ trợ, liên hệ Tổ Công nghệ số cộng đồng {unit_name}.
"""


def data_file(name: str) -> Path:
    return Path(str(resources.files("broadcaster") / "data" / name))


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


HOOK_ACCOUNTS = {"zalo": "zalo-oa-laichau", "facebook": "fb-page-laichau", "webhook": "mocha-bridge"}
BROWSER = "Mozilla/5.0 (Linux; Android 14; SM-A155F) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class DemoGroups:
    total: int
    by_platform_mode: Mapping[str, int]  # "zalo/relay": count
    import_: GroupImport = field(metadata=renamed("import"))


@dataclass(frozen=True, slots=True)
class DemoCheck:
    ok: int
    mismatched: int
    units_without_group: int


@dataclass(frozen=True, slots=True)
class DemoContent:
    id: int
    status: str
    approved_by: str
    author: str


@dataclass(frozen=True, slots=True)
class Replanned:
    """The same dispatch planned again: nothing is added."""

    added: int
    total: int
    same_dispatch: bool


@dataclass(frozen=True, slots=True)
class DemoSending:
    seconds: float
    status: str
    by_state: Mapping[str, int]
    by_tier: Mapping[str, Mapping[str, int]]
    sandbox_messages: Mapping[str, int]  # what each sandbox platform received
    errors: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Responses:
    """What the simulated people did through ``cns serve``'s pages."""

    confirmed: int  # relay posts confirmed by village leaders
    link_opened: int  # tracked links opened by a browser
    previews: int  # tracked links fetched by preview robots (not counted)


@dataclass(frozen=True, slots=True)
class DemoEngagement:
    people: Responses
    inbound_events: Mapping[str, int]  # webhook events by processing status
    groups_counted: int


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The monthly report without its villages (the demo prints the teams' tiers)."""

    month: str
    as_of: date
    root: UnitRef
    tiers: tuple[str, ...]
    totals: Totals
    units: tuple[UnitFigures, ...]


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """``cns demo``: what it did, step by step, and what it did not do."""

    database: str
    schema: str | None
    as_of: date
    units: Mapping[str, Mapping[str, int]]  # units per level on the day before the reform, and today
    imports: tuple[ImportReport, ...]
    groups: DemoGroups
    groups_check: DemoCheck
    content: DemoContent
    dispatch: PlanResult
    replanned: Replanned
    sending: DemoSending
    engagement: DemoEngagement
    report: DemoReport
    done: tuple[str, ...]
    not_done: tuple[str, ...]


async def run_demo(workdir: Path) -> DemoSummary:
    """Everything on embedded defaults, against the sandbox platforms started here on 127.0.0.1, with
    ``cns serve`` (in this process) receiving the members' replies and reactions through its webhooks."""
    base = f"http://127.0.0.1:{_free_port()}"
    config = SandboxConfig(hook_base=base, reply_rate=0.3, react_rate=0.4, hook_accounts=HOOK_ACCOUNTS)
    boxes = await Sandboxes(config).start()
    try:
        return await _run(workdir, boxes, base)
    finally:
        await boxes.stop()


async def _run(workdir: Path, boxes: Sandboxes, base: str) -> DemoSummary:  # noqa: PLR0915 - the story
    creds = boxes.credentials
    secrets = workdir / "secrets.json"
    secrets.write_text(
        json.dumps(
            {
                "telegram_token": creds["telegram"]["token"],
                "zalo_app_secret": creds["zalo"]["app_secret"],
                "facebook_page_token": creds["facebook"]["page_token"],
                "webhook_secret": creds["webhook"]["secret"],
                # What our webhooks check inbound requests with (cns serve):
                "telegram_hook": secrets_module.token_urlsafe(24),
                "zalo_oa_secret": creds["zalo"]["oa_secret"],
                "facebook_app_secret": creds["facebook"]["app_secret"],
                "facebook_verify_token": secrets_module.token_urlsafe(12),
                "webhook_inbound": creds["webhook"]["inbound_secret"],
            }
        )
    )
    secrets.chmod(0o600)
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'cns-demo.db'}",
        secrets_file=secrets,
        token_dir=workdir / "tokens",
        public_url=base,
        link_secret=secrets_module.token_urlsafe(32),
    )
    (workdir / "tokens").mkdir(exist_ok=True)
    await FileTokenStore(settings.token_dir / "zalo-zalo-oa-laichau.json").save(
        OAuthTokens(creds["zalo"]["access_token"], creds["zalo"]["refresh_token"], time.time() + 90_000)
    )
    app, _, schema = await initialise(settings)
    day = today()
    runner = web.AppRunner(make_web_app(app), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(base.rsplit(":", 1)[1])).start()
    try:
        async with app.transaction() as s:
            await users.add_user(s, None, "admin", "admin", full_name="Quản trị hệ thống", today=day)
        async with app.transaction() as s:
            admin = await users.get_actor(s, "admin")
            imports = [
                await import_units(s, data_file("laichau-2022-units.csv"), date(2022, 1, 1)),
                await import_units(
                    s,
                    data_file("laichau-2025-units.csv"),
                    REFORM,
                    data_file("laichau-2022-to-2025-communes.csv"),
                ),
                await import_units(s, data_file("laichau-villages-sample.csv"), REFORM),
            ]
            await import_aliases(s, data_file("laichau-name-variants.csv"), date(2025, 6, 30))
        imports.append(await _generated_villages(app, workdir, day))
        await _people_and_accounts(app, admin, day, boxes)
        async with app.transaction() as s:
            tree = await load_tree(s, day)
            group_rows = _demo_groups(tree)
            path = _write_csv(
                workdir / "groups.csv",
                ["unit_code", "account", "external_id", "title", "mode", "admins"],
                group_rows,
            )
            group_import = await groups.import_groups(s, admin, path, day)
        # Village team leaders follow the province's OA, so the OA can message them one to one (relay).
        zalo_state = boxes.running["zalo"].app[zalo_box.STATE]
        zalo_state.followers.update(a.split(":", 1)[1] for row in group_rows for a in row[5].split(";") if a)
        async with app.transaction() as s:
            editor = await users.get_actor(s, "bien.tap")
            item, _ = await workflow.create(
                s,
                editor,
                title="Nộp hồ sơ trực tuyến trên Cổng Dịch vụ công",
                body=SAMPLE_POST,
                category="chính quyền số",
                links=["https://dichvucong.gov.vn"],
                max_bytes=settings.attachment_max_bytes,
            )
            content_id = item.id
            assert content_id is not None
            await workflow.submit(s, editor, content_id)
        async with app.transaction() as s:
            approver = await users.get_actor(s, "phe.duyet")
            await workflow.approve(s, approver, content_id)
        async with app.transaction() as s:
            editor = await users.get_actor(s, "bien.tap")
            plan = await planning.plan(s, editor, content_id, ["12"])
        async with app.transaction() as s:
            again = await planning.plan(s, editor, content_id, ["12"])
        await register_webhook(app, "tg-laichau")  # what `cns accounts webhook tg-laichau` does
        await _bot_admin(boxes, group_rows)
        started = time.perf_counter()
        stats = await make_dispatcher(app).run(asyncio.Event(), until_idle=True)
        elapsed = time.perf_counter() - started
        polled = await _count_members(app)
        people = await _people_respond(app, base)
        inbound = await _settle(app)
        async with app.sessions() as s:
            report = await reports.monthly(s, None, day.strftime("%Y-%m"))
        async with app.transaction() as s:
            outcome = await dispatch_control.status(s, plan.dispatch_id)
            check = await check_groups(s, day)
            before = await load_tree(s, date(2025, 6, 30))
            after = await load_tree(s, day)
            modes = Counter(
                f"{p}/{m}" for p, m in (await s.execute(select(col(ChatGroup.platform), col(ChatGroup.mode))))
            )
            total_groups = (await s.execute(select(func.count()).select_from(ChatGroup))).scalar_one()
    finally:
        await runner.cleanup()
        await app.close()
    received = {
        "telegram": len(boxes.running["telegram"].app[tg_box.STATE].messages),
        "zalo": len(zalo_state.messages),
        "facebook": len(boxes.running["facebook"].app[fb_box.STATE].posts),
        "webhook": len(boxes.running["webhook"].app[wh_box.STATE].messages),
    }
    assert isinstance(report, reports.MonthlyReport)  # the demo's units exist
    return DemoSummary(
        database=str(workdir / "cns-demo.db"),
        schema=schema,
        as_of=day,
        units={"2025-06-30": before.counts(), day.isoformat(): after.counts()},
        imports=tuple(imports),
        groups=DemoGroups(total_groups, dict(sorted(modes.items())), group_import),
        groups_check=DemoCheck(check.ok, len(check.mismatched), len(check.units_without_group)),
        content=DemoContent(content_id, ContentStatus.APPROVED, approved_by="phe.duyet", author="bien.tap"),
        dispatch=plan,
        replanned=Replanned(again.added, again.total, again.dispatch_id == plan.dispatch_id),
        sending=DemoSending(
            round(elapsed, 2),
            outcome.status,
            outcome.by_state,
            outcome.tier_states,
            received,
            stats.errors,
        ),
        engagement=DemoEngagement(people, inbound, polled),
        report=DemoReport(
            report.month,
            report.as_of,
            report.root,
            report.tiers,
            report.totals,
            tuple(u for u in report.units if u.level != "village"),
        ),
        done=(
            "units 2022 and 2025 with the reform mapping",
            "villages (8 real, the rest generated)",
            "accounts with secret references, pointed at the sandbox platforms",
            "groups on every tier and platform",
            "content written, submitted and approved (four eyes)",
            "dispatch planned to every tier and sent through the sandbox Telegram, Zalo, Facebook, webhook "
            "and relay (village leaders), with the durable dispatcher",
            "members' replies and reactions posted back by the sandboxes to cns serve's webhooks with real "
            "signatures, stored, linked to their deliveries",
            "village leaders confirming relay posts (/r/...) and people opening tracked links (/l/...; "
            "link-preview robots not counted)",
            "member counts read once from every direct group through the platforms (cns worker/serve "
            "do it every 24 h)",
            "the monthly report rolled up tier by tier",
        ),
        not_done=(
            "tier waves and quiet hours are off in the demo, so every tier goes out at once (cns send "
            "--waves commune=15,village=30 staggers them)",
            "relay groups are the village leaders' own, so their member counts stay unknown (never 0)",
        ),
    )


async def _generated_villages(app: App, workdir: Path, day: date) -> ImportReport:
    """No public village register exists: give every commune but Mù Cả a few placeholder villages."""
    async with app.transaction() as s:
        tree = await load_tree(s, day)
        rows = []
        for node in tree.nodes.values():
            if node.level == "commune" and not node.children:
                count = VILLAGES_PER_COMMUNE[int(node.code) % len(VILLAGES_PER_COMMUNE)]
                rows += [
                    [f"{node.code}-G{i:02d}", f"Bản {i} (tạo mẫu)", "bản", "village", node.code]
                    for i in range(1, count + 1)
                ]
        generated = _write_csv(
            workdir / "generated-villages.csv", ["code", "name", "type", "level", "parent_code"], rows
        )
        return await import_units(s, generated, REFORM)


async def _people_and_accounts(app: App, admin: users.Actor, day: date, boxes: Sandboxes) -> None:
    async with app.transaction() as s:
        for name, role, scope, full in (
            ("bien.tap", "editor", "12", "Biên tập viên Sở KH&CN"),
            ("phe.duyet", "approver", "12", "Lãnh đạo phòng"),
            ("mu.ca", "editor", "03451", "Cán bộ xã Mù Cả"),
            ("xem", "viewer", None, "Theo dõi"),
        ):
            await users.add_user(s, admin.name, name, role, scope_code=scope, full_name=full, today=day)
        urls, creds = boxes.urls, boxes.credentials
        hooks = {
            "tg-laichau": {"hook": "file:telegram_hook"},
            "zalo-oa-laichau": {"hook": "file:zalo_oa_secret"},
            "fb-page-laichau": {
                "hook": "file:facebook_app_secret",
                "verify_token": "file:facebook_verify_token",
            },
            "mocha-bridge": {"hook": "file:webhook_inbound"},
        }
        for name, platform, ref, cfg in (
            # 25/s rather than the bot's 30/s: this process also serves the webhooks and the link
            # clicks, and the margin keeps a busy event loop's timer lateness from bunching sends.
            (
                "tg-laichau",
                "telegram",
                "file:telegram_token",
                {"base_url": urls["telegram"], "rate_per_second": 25},
            ),
            (
                "zalo-oa-laichau",
                "zalo",
                "file:zalo_app_secret",
                {
                    "base_url": urls["zalo"],
                    "oauth_url": urls["zalo"],
                    "app_id": creds["zalo"]["app_id"],
                    "rate_per_second": 100,
                },
            ),  # GMF has no per-second limit; the sandbox allows 4,000 calls/min
            ("fb-page-laichau", "facebook", "file:facebook_page_token", {"base_url": urls["facebook"]}),
            ("mocha-bridge", "webhook", "file:webhook_secret", {"base_url": urls["webhook"]}),
        ):
            await accounts.add_account(
                s, admin, name, platform, secret_ref=ref, settings=cfg, extra_secrets=hooks[name]
            )


def _demo_groups(tree: Any) -> list[list[str]]:
    """Province and communes on Zalo (OA group), Telegram and the Facebook Page; villages on Zalo in
    relay mode through their team leader, a few on Telegram directly and a few via the Mocha bridge."""
    rows: list[list[str]] = []
    for node in sorted(tree.nodes.values(), key=lambda n: n.code):
        if node.level == "province":
            title = f"CNS_tỉnh {node.name.removeprefix('Tỉnh ')}"
            rows += [
                ["12", "zalo-oa-laichau", "gmf-12", title, GroupMode.DIRECT, ""],
                ["12", "tg-laichau", "-1001200000012", title, GroupMode.DIRECT, ""],
                ["12", "fb-page-laichau", DEMO_PAGE, title, GroupMode.DIRECT, ""],
            ]
        elif node.level == "commune":
            title = f"CNS_{node.name}"
            rows += [
                [node.code, "zalo-oa-laichau", f"gmf-{node.code}", title, GroupMode.DIRECT, ""],
                [node.code, "tg-laichau", f"-100{int(node.code):010d}", title, GroupMode.DIRECT, ""],
            ]
        elif node.level == "village":
            commune = tree.nodes[node.parent_id]
            title = f"CNS_{node.name}_{commune.name}"
            leader = f"Trưởng {node.name}=zalo:84{zlib.crc32(node.code.encode()) % 10**9:09d}"
            serial = int(node.code.rsplit("-", 1)[1].lstrip("G") or 0)
            rows.append([node.code, "zalo-oa-laichau", f"relay-{node.code}", title, GroupMode.RELAY, leader])
            if serial == 1:
                rows.append(
                    [
                        node.code,
                        "tg-laichau",
                        f"-200{zlib.crc32(node.code.encode()) % 10**9:09d}",
                        title,
                        GroupMode.DIRECT,
                        "",
                    ]
                )
            if serial == 2:
                rows.append([node.code, "mocha-bridge", f"mocha-{node.code}", title, GroupMode.DIRECT, ""])
    return rows


async def _count_members(app: App) -> int:
    """What cns worker/serve do every CNS_REACH_INTERVAL_HOURS: each direct group's member count, read
    through the dispatcher's rate limits (relay groups are not ours to count: they stay unknown)."""
    from broadcaster.runtime.upkeep import poll_members

    dispatcher = make_dispatcher(app)
    try:
        total = 0
        while taken := await poll_members(app, dispatcher):
            total += taken
        return total
    finally:
        await dispatcher.close()


async def _bot_admin(boxes: Sandboxes, rows: list[list[str]]) -> None:
    """Telegram sends reactions only to bots that are admins of the group: the province made ours one."""
    chats = [
        {"id": int(r[2]), "bot_status": "administrator", "title": r[3]} for r in rows if r[1] == "tg-laichau"
    ]
    async with aiohttp.ClientSession() as http:
        (await http.post(f"{boxes.urls['telegram']}/__sim/chats", json=chats)).raise_for_status()


async def _people_respond(app: App, base: str) -> Responses:
    """Village leaders confirm two relay posts in three; one reader in four opens the post's link (and
    the chat apps' preview robots fetch it first, which must not count)."""
    async with app.sessions() as s:
        rows = (await s.execute(select(col(Delivery.id), col(Delivery.state)))).all()
    track = link_tracker(app.settings)
    confirmed = opened = previews = 0
    async with aiohttp.ClientSession() as http:
        for row_id, state in rows:
            delivery_id = pk(row_id)
            if state == DeliveryState.AWAITING_CONFIRMATION and delivery_id % 3:
                token = confirmation_token(app.settings, f"delivery-{delivery_id}")
                async with http.post(f"{base}/r/{token}") as answer:
                    confirmed += answer.status == 200
            if state in SEND_SUCCEEDED and delivery_id % 4 == 0:
                link = track(delivery_id)("https://dichvucong.gov.vn")
                for agent in ("facebookexternalhit/1.1", BROWSER):
                    async with http.get(link, headers={"User-Agent": agent}, allow_redirects=False) as answer:
                        if answer.status == 302 and agent == BROWSER:
                            opened += 1
                        elif answer.status == 302:
                            previews += 1
    return Responses(confirmed, opened, previews)


async def _settle(app: App, patience: float = 10.0) -> dict[str, int]:
    """Wait until the sandboxes' webhook deliveries have arrived and been processed."""
    deadline, last, stable = time.monotonic() + patience, -1, 0
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        async with app.sessions() as s:
            counts = {
                str(k): int(v)
                for k, v in (
                    await s.execute(
                        select(col(InboundEvent.status), func.count()).group_by(col(InboundEvent.status))
                    )
                ).all()
            }
        total = sum(counts.values())
        stable = stable + 1 if total == last and not any(counts.get(s) for s in EVENT_UNPROCESSED) else 0
        if stable >= 4:
            break
        last = total
        await asyncio.sleep(0.25)
    return counts
