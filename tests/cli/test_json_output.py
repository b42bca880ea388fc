"""`cns --json` output is a public surface: scripts read its keys. Each command's output is compared key by
key (names, order, value types and values) with what it printed when the commands still built their
dicts by hand (``golden/json_outputs.json``), volatile values (times, today's date, tokens, the schema
revision, paths) normalised. A key renamed, dropped, added or moved fails here.

To record the outputs again after a deliberate change of the surface:
``CNS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/cli/test_json_output.py`` (and say so in the change)."""

from __future__ import annotations

import json
import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broadcaster.cli.demo import data_file
from broadcaster.cli.main import main

GOLDEN = Path(__file__).parent / "golden" / "json_outputs.json"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2})?$")
_TOKEN = re.compile(r"^cns_[A-Za-z0-9_-]{20,}$")


def _normalise(value: object, volatile: dict[str, str]) -> object:
    if isinstance(value, dict):
        return {k: _normalise(v, volatile) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, volatile) for v in value]
    if isinstance(value, str):
        if _DATETIME.match(value):
            return "<datetime>"
        if _TOKEN.match(value):
            return "<token>"
        for raw, marker in volatile.items():
            value = value.replace(raw, marker)
    return value


def _compare(name: str, got: object, want: object, path: str = "") -> None:
    """Key names and order, then each value, with the place of the first difference in the message."""
    where = f"{name}{path or ' (top)'}"
    assert type(got).__name__ == type(want).__name__, (
        f"{where}: {type(got).__name__} != {type(want).__name__}"
    )
    if isinstance(want, dict):
        assert isinstance(got, dict)
        assert list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for key in want:
            _compare(name, got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list)
        assert len(got) == len(want), f"{where}: {len(got)} items != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _compare(name, g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    """The commands, in order, with their parsed --json output."""
    db = f"sqlite:///{tmp_path}/golden.db"
    outputs: dict[str, object] = {}

    def cns(name: str, *args: str) -> object:
        capsys.readouterr()
        code = 0
        try:
            main(["--db", db, "--json", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        assert code == 0, (name, captured.err)
        data = json.loads(captured.out)
        outputs[name] = data
        return data

    groups = tmp_path / "groups.csv"
    groups.write_text(
        "unit_code,account,external_id,title,mode,admins\n"
        "12,hook,p,CNS_tỉnh Lai Châu,,\n03451,hook,c,CNS_Xã Mù Cả,,\n03388,hook,d,CNS_Phường Đoàn Kết,,\n"
        "03451,zalo,r,CNS_Mù Cả,relay,Lò A=zalo:84911\n03451,zalo,x,Nhóm lạ,,\n03451,hook,c2,CNS_Xã Mù Cả,,\n",
        encoding="utf-8",
    )
    body = tmp_path / "body.md"
    body.write_text(
        "Chào **bà con** {unit_name}!\n\n- Bước 1\n- Bước 2\n\nhttps://example.vn\n", encoding="utf-8"
    )
    start = (datetime.now(LOCAL) + timedelta(days=5)).strftime("%Y-%m-%dT08:00")
    month = datetime.now(LOCAL).strftime("%Y-%m")

    cns("init", "init")
    cns("users add (first)", "users", "add", "root", "--role", "admin")
    cns("units import", "--as", "root", "units", "import", str(data_file("laichau-2022-units.csv")), "--valid-from", "2022-01-01")  # fmt: skip
    cns("units import (reform)", "--as", "root", "units", "import", str(data_file("laichau-2025-units.csv")), "--valid-from", "2025-07-01", "--mapping", str(data_file("laichau-2022-to-2025-communes.csv")))  # fmt: skip
    cns("units import (villages)", "--as", "root", "units", "import", str(data_file("laichau-villages-sample.csv")), "--valid-from", "2025-07-01")  # fmt: skip
    cns("units aliases", "--as", "root", "units", "aliases", str(data_file("laichau-name-variants.csv")), "--as-of", "2025-06-30")  # fmt: skip
    cns("units tree", "units", "tree", "--as-of", "2025-06-30", "--depth", "1")
    cns("units tree (root)", "units", "tree", "--as-of", "2025-07-01", "--root", "03451")
    cns("tiers list", "tiers", "list", "--as-of", "2025-06-30")
    cns("users add", "--as", "root", "users", "add", "ed", "--role", "editor", "--scope", "12", "--full-name", "Biên tập")  # fmt: skip
    cns("users add (approver)", "--as", "root", "users", "add", "ap", "--role", "approver")
    cns("users list", "users", "list")
    cns("accounts add", "--as", "root", "accounts", "add", "zalo", "--platform", "zalo", "--secret", "env:CNS_GOLDEN_ZALO", "--set", "app_id=123", "--extra-secret", "hook=env:CNS_GOLDEN_MISSING")  # fmt: skip
    cns("accounts add (webhook)", "--as", "root", "accounts", "add", "hook", "--platform", "webhook", "--secret", "env:CNS_GOLDEN_HOOK", "--base-url", "http://127.0.0.1:9/bridge")  # fmt: skip
    cns("accounts list", "accounts", "list")
    cns("accounts webhook", "--as", "root", "accounts", "webhook", "zalo")
    cns("groups import", "--as", "root", "groups", "import", str(groups))
    cns("groups add", "--as", "root", "groups", "add", "--unit", "03388", "--account", "zalo", "--external-id", "rr", "--title", "CNS_Phường Đoàn Kết", "--mode", "relay", "--admins", "Lò B=zalo:84912; Lò C=telegram:42")  # fmt: skip
    cns("groups list", "groups", "list", "--unit", "03451")
    cns("groups check", "groups", "check")
    cns("groups suggestions", "--as", "root", "groups", "suggestions")
    cns("content new", "--as", "ed", "content", "new", "--title", "Thanh toán số", "--body-file", str(body), "--category", "kinh tế số", "--link", "https://example.vn")  # fmt: skip
    cns("content edit", "--as", "ed", "content", "edit", "1", "--title", "Thanh toán số (sửa)")
    cns("content submit", "--as", "ed", "content", "submit", "1")
    cns("content reject", "--as", "ap", "content", "reject", "1", "--reason", "Thiếu hình minh hoạ")
    cns("content submit (again)", "--as", "ed", "content", "submit", "1")
    cns("content approve", "--as", "ap", "content", "approve", "1", "--revision", "2")
    cns("content show", "content", "show", "1")
    cns("content list", "content", "list")
    cns("send", "--as", "ed", "send", "1", "--scope", "12", "--platforms", "zalo,webhook", "--quiet-hours", "off")  # fmt: skip
    cns("status", "status", "1")
    cns("pause", "--as", "ed", "pause", "1")
    cns("resume", "--as", "ed", "resume", "1")
    cns("cancel", "--as", "ed", "cancel", "1")
    cns("status (latest)", "status")
    cns("campaigns add", "--as", "ed", "campaigns", "add", "Tuần lễ số", "--posts", "1", "--start", start, "--rrule", "FREQ=WEEKLY;BYDAY=MO", "--scope", "12", "--waves", "commune=15")  # fmt: skip
    cns("campaigns list", "campaigns", "list")
    cns("report monthly", "report", "monthly", "--month", month, "--unit", "03451")
    cns("report monthly (no units)", "report", "monthly", "--month", "2000-01")
    cns("report post --dry-run", "--as", "ed", "report", "post", "--month", month, "--dry-run")
    cns("privacy export", "--as", "root", "privacy", "export", "--platform", "zalo", "--user-id", "555")
    cns("privacy delete", "--as", "root", "privacy", "delete", "--platform", "zalo", "--user-id", "555")
    cns("users token", "--as", "root", "users", "token", "ed", "--label", "dash")
    cns("audit", "audit", "--entity", "content")
    return outputs


def test_json_output_keeps_its_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNS_GOLDEN_ZALO", "zalo-secret-value")
    monkeypatch.setenv("CNS_GOLDEN_HOOK", "whsec_" + "A" * 32)
    monkeypatch.delenv("CNS_GOLDEN_MISSING", raising=False)
    monkeypatch.setenv("CNS_LINK_SECRET", "golden-link-secret")  # keys the pseudonyms
    for name in ("CNS_USER", "CNS_PSEUDONYM_KEY", "CNS_PUBLIC_URL", "CNS_SECRETS_FILE"):
        monkeypatch.delenv(name, raising=False)
    now = datetime.now(LOCAL)
    first_next = (now.replace(day=28) + timedelta(days=4)).replace(day=1)
    volatile = {
        str(tmp_path): "<tmp>",
        (first_next - timedelta(days=1)).date().isoformat(): "<month-end>",
        now.date().isoformat(): "<today>",
        date.today().isoformat(): "<today>",
        now.strftime("%Y-%m"): "<month>",
        f"THÁNG {now.month}/{now.year}": "THÁNG <month>",  # the summary's heading
    }
    outputs = _scenario(tmp_path, capsys)
    got = {name: _normalise(data, volatile) for name, data in outputs.items()}
    init = got["init"]
    assert isinstance(init, dict)
    init["after"] = "<revision>"  # the schema's latest migration
    if os.environ.get("CNS_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert list(got) == list(want)
    for name in want:
        _compare(name, got[name], want[name])
