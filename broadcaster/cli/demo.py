"""``cns demo``: the whole foundation on embedded defaults, in a fresh SQLite database.

It imports the real Lai Châu structures (2022, then the 2025 reform with its mapping), the village sample
and generated villages, registers accounts and groups on every tier and platform (village groups mostly
in relay mode, as real village Zalo groups cannot be reached by any API), adds users, writes and
approves a guidance post and plans its dispatch to every tier. Sending is not part of this release.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections import Counter
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from broadcaster import accounts, groups, planning, users
from broadcaster.bootstrap import App
from broadcaster.group_check import check_groups
from broadcaster.models import ChatGroup
from broadcaster.settings import Settings
from broadcaster.timeutil import today
from broadcaster.unit_aliases import import_aliases
from broadcaster.unit_import import import_units
from broadcaster.unit_tree import load_tree
from content import workflow

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


async def run_demo(workdir: Path) -> dict[str, Any]:
    secrets = workdir / "secrets.json"
    secrets.write_text(
        json.dumps(
            {
                "telegram_token": "123456:demo-token-not-real",
                "zalo_oa_token": "demo-zalo",
                "facebook_page_token": "demo-page",
                "webhook_secret": "whsec_ZGVtby1vbmx5LW5vdC1yZWFsLXNlY3JldA==",
            }
        )
    )
    secrets.chmod(0o600)
    settings = Settings(database_url=f"sqlite:///{workdir / 'cns-demo.db'}", secrets_file=secrets)
    app, _, schema = await App.initialise(settings)
    day = today()
    try:
        async with app.transaction() as s:
            await users.add_user(s, None, "admin", "admin", full_name="Quản trị hệ thống", today=day)
        async with app.transaction() as s:
            admin = await users.get_actor(s, "admin")
            imports = [
                (await import_units(s, data_file("laichau-2022-units.csv"), date(2022, 1, 1))).to_dict(),
                (
                    await import_units(
                        s,
                        data_file("laichau-2025-units.csv"),
                        REFORM,
                        data_file("laichau-2022-to-2025-communes.csv"),
                    )
                ).to_dict(),
                (await import_units(s, data_file("laichau-villages-sample.csv"), REFORM)).to_dict(),
            ]
            await import_aliases(s, data_file("laichau-name-variants.csv"), date(2025, 6, 30))
        imports.append(await _generated_villages(app, workdir, day))
        await _people_and_accounts(app, admin, day)
        async with app.transaction() as s:
            tree = await load_tree(s, day)
            group_rows = _demo_groups(tree)
            path = _write_csv(
                workdir / "groups.csv",
                ["unit_code", "account", "external_id", "title", "mode", "admins"],
                group_rows,
            )
            group_import = await groups.import_groups(s, admin, path, day)
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
        async with app.transaction() as s:
            check = await check_groups(s, day)
            before = await load_tree(s, date(2025, 6, 30))
            after = await load_tree(s, day)
            modes = Counter(
                f"{p}/{m}" for p, m in (await s.execute(select(col(ChatGroup.platform), col(ChatGroup.mode))))
            )
            total_groups = (await s.execute(select(func.count()).select_from(ChatGroup))).scalar_one()
    finally:
        await app.close()
    return {
        "database": str(workdir / "cns-demo.db"),
        "schema": schema,
        "as_of": day.isoformat(),
        "units": {"2025-06-30": before.counts(), day.isoformat(): after.counts()},
        "imports": imports,
        "groups": {
            "total": total_groups,
            "by_platform_mode": dict(sorted(modes.items())),
            "import": group_import,
        },
        "groups_check": {
            "ok": check.ok,
            "mismatched": len(check.mismatched),
            "units_without_group": len(check.units_without_group),
        },
        "content": {"id": content_id, "status": "approved", "approved_by": "phe.duyet", "author": "bien.tap"},
        "dispatch": plan.to_dict(),
        "replanned": {
            "added": again.added,
            "total": again.total,
            "same_dispatch": again.dispatch_id == plan.dispatch_id,
        },
        "done": [
            "units 2022 and 2025 with the reform mapping",
            "villages (8 real, the rest generated)",
            "accounts with secret references",
            "groups on every tier and platform",
            "content written, submitted and approved (four eyes)",
            "dispatch planned to every tier",
        ],
        "not_done": [
            "nothing was sent: the dispatcher and the sandbox platforms land in later releases",
            "no replies, reactions or monthly report yet",
        ],
    }


async def _generated_villages(app: App, workdir: Path, day: date) -> dict[str, object]:
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
        return (await import_units(s, generated, REFORM)).to_dict()


async def _people_and_accounts(app: App, admin: users.Actor, day: date) -> None:
    async with app.transaction() as s:
        for name, role, scope, full in (
            ("bien.tap", "editor", "12", "Biên tập viên Sở KH&CN"),
            ("phe.duyet", "approver", "12", "Lãnh đạo phòng"),
            ("mu.ca", "editor", "03451", "Cán bộ xã Mù Cả"),
            ("xem", "viewer", None, "Theo dõi"),
        ):
            await users.add_user(s, admin.name, name, role, scope_code=scope, full_name=full, today=day)
        for name, platform, ref in (
            ("tg-laichau", "telegram", "file:telegram_token"),
            ("zalo-oa-laichau", "zalo", "file:zalo_oa_token"),
            ("fb-page-laichau", "facebook", "file:facebook_page_token"),
            ("mocha-bridge", "webhook", "file:webhook_secret"),
        ):
            await accounts.add_account(s, admin, name, platform, secret_ref=ref)


def _demo_groups(tree: Any) -> list[list[str]]:
    """Province and communes on Zalo (OA group), Telegram and the Facebook Page; villages on Zalo in
    relay mode through their team leader, a few on Telegram directly and a few via the Mocha bridge."""
    rows: list[list[str]] = []
    for node in sorted(tree.nodes.values(), key=lambda n: n.code):
        if node.level == "province":
            title = f"CNS_tỉnh {node.name.removeprefix('Tỉnh ')}"
            rows += [
                ["12", "zalo-oa-laichau", "gmf-12", title, "direct", ""],
                ["12", "tg-laichau", "-1001200000012", title, "direct", ""],
                ["12", "fb-page-laichau", "page-laichau", title, "direct", ""],
            ]
        elif node.level == "commune":
            title = f"CNS_{node.name}"
            rows += [
                [node.code, "zalo-oa-laichau", f"gmf-{node.code}", title, "direct", ""],
                [node.code, "tg-laichau", f"-100{int(node.code):010d}", title, "direct", ""],
            ]
        elif node.level == "village":
            commune = tree.nodes[node.parent_id]
            title = f"CNS_{node.name}_{commune.name}"
            leader = f"Trưởng {node.name}=zalo:84{zlib.crc32(node.code.encode()) % 10**9:09d}"
            serial = int(node.code.rsplit("-", 1)[1].lstrip("G") or 0)
            rows.append([node.code, "zalo-oa-laichau", f"relay-{node.code}", title, "relay", leader])
            if serial == 1:
                rows.append(
                    [
                        node.code,
                        "tg-laichau",
                        f"-200{zlib.crc32(node.code.encode()) % 10**9:09d}",
                        title,
                        "direct",
                        "",
                    ]
                )
            if serial == 2:
                rows.append([node.code, "mocha-bridge", f"mocha-{node.code}", title, "direct", ""])
    return rows
