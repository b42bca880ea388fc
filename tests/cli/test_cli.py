"""The `cns` command line, driven through its real entry point: output, --json, exit codes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from broadcaster.cli.demo import data_file
from broadcaster.cli.main import main


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


class Cns:
    def __init__(self, db: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.db, self.capsys = db, capsys

    def __call__(self, *args: str) -> Run:
        self.capsys.readouterr()
        try:
            main(["--db", self.db, *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def ok(self, *args: str) -> Run:
        result = self(*args)
        assert result.code == 0, result.err
        return result


@pytest.fixture
def cns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cns:
    return Cns(f"sqlite:///{tmp_path}/cli.db", capsys)


def _setup(cns: Cns) -> None:
    cns.ok("init")
    cns.ok("users", "add", "root", "--role", "admin")
    cns.ok(
        "--as",
        "root",
        "units",
        "import",
        str(data_file("laichau-2022-units.csv")),
        "--valid-from",
        "2022-01-01",
    )
    cns.ok(
        "--as",
        "root",
        "units",
        "import",
        str(data_file("laichau-2025-units.csv")),
        "--valid-from",
        "2025-07-01",
        "--mapping",
        str(data_file("laichau-2022-to-2025-communes.csv")),
    )


def test_tree_counts_before_and_after_the_reform(cns: Cns) -> None:
    _setup(cns)
    before = cns.ok("--json", "units", "tree", "--as-of", "2025-06-30").json()
    after = cns.ok("--json", "units", "tree", "--as-of", "2025-07-01").json()
    assert before["counts"] == {"province": 1, "district": 8, "commune": 106}  # type: ignore[index]
    assert after["counts"] == {"province": 1, "commune": 38}  # type: ignore[index]
    text = cns.ok("units", "tree", "--as-of", "2025-06-30").out
    assert "  105  Thành phố Lai Châu  [district]" in text
    assert "    03386  Phường Quyết Thắng  [commune]" in text
    assert text.rstrip().endswith("-- 2025-06-30: province: 1, district: 8, commune: 106")


def test_errors_are_one_line_with_exit_1_and_usage_errors_exit_2(cns: Cns, tmp_path: Path) -> None:
    not_init = cns("units", "tree")
    assert (
        not_init.code == 1
        and not_init.err == "cns: error: the database is not initialised: run `cns init` first\n"
    )
    _setup(cns)
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,type,level,parent_code\n12,Tỉnh X,tỉnh,province,\n0001,Xã A,xã,commune,999\n")
    cases = [
        (
            ("--as", "root", "units", "import", str(bad), "--valid-from", "2022-01-01"),
            "bad.csv:3: unknown parent code 999",
        ),
        (("--as", "ghost", "users", "list"), "unknown user 'ghost'"),
        (("units", "import", str(bad), "--valid-from", "2022-01-01"), "--as USER or CNS_USER"),
        (("--as", "root", "send", "1", "--scope", "12"), "unknown content 1"),
        (
            ("--as", "root", "accounts", "add", "x", "--platform", "zalo", "--secret", "plain"),
            "must be given as a reference",
        ),
        (("--as", "root", "units", "tree", "--as-of", "yesterday"), "invalid date 'yesterday'"),
        (("--db", "postgresql://postgres@127.0.0.1:1/x", "units", "tree"), "cannot open the database"),
    ]
    for args, message in cases:
        result = cns(*args)
        assert result.code == 1, args
        assert message in result.err and result.err.count("\n") == 1, result.err
    usage = cns("units", "frobnicate")
    assert usage.code == 2
    assert cns("users", "add", "x", "--role", "boss").code == 2


def test_full_workflow_through_the_cli(cns: Cns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(cns)
    cns.ok("--as", "root", "users", "add", "ed", "--role", "editor", "--scope", "12")
    cns.ok("--as", "root", "users", "add", "ap", "--role", "approver")
    monkeypatch.setenv("CNS_TEST_ZALO", "secret-value-zalo")
    refused = cns(
        "--as", "root", "accounts", "add", "zalo", "--platform", "zalo", "--secret", "env:CNS_TEST_ZALO"
    )
    assert refused.code == 1 and "needs the setting app_id" in refused.err  # every send would fail
    cns.ok(
        "--as", "root", "accounts", "add", "zalo", "--platform", "zalo", "--secret", "env:CNS_TEST_ZALO",
        "--set", "app_id=4318550211",
    )  # fmt: skip
    listed = cns.ok("--json", "accounts", "list")
    assert "secret-value-zalo" not in listed.out
    assert listed.json()[0]["secrets"]["main"] == {"ref": "env:CNS_TEST_ZALO", "available": True}  # type: ignore[index]
    groups = tmp_path / "groups.csv"
    groups.write_text(
        "unit_code,account,external_id,title,mode,admins\n"
        "12,zalo,p,CNS_tỉnh Lai Châu,,\n03451,zalo,c,CNS_Xã Mù Cả,,\n"
        "03451,zalo,r,CNS_Mù Cả,relay,Lò A=zalo:84911\n"
    )
    cns.ok("--as", "root", "groups", "import", str(groups))
    assert len(cns.ok("--json", "groups", "list", "--unit", "03451").json()) == 2  # type: ignore[arg-type]
    check = cns.ok("--json", "groups", "check").json()
    assert check["duplicates"][0]["kind"] == "same unit and platform"  # type: ignore[index]

    body = tmp_path / "body.md"
    body.write_text("Chào **bà con** {unit_name}!\n\n- Bước 1\n- Bước 2\n", encoding="utf-8")
    created = cns.ok(
        "--json",
        "--as",
        "ed",
        "content",
        "new",
        "--title",
        "Thanh toán số",
        "--body-file",
        str(body),
        "--category",
        "kinh tế số",
        "--link",
        "https://example.vn",
    ).json()
    cid = str(created["id"])  # type: ignore[index]
    refused = cns("--as", "ed", "send", cid, "--scope", "12")
    assert refused.code == 1 and "is draft, not approved" in refused.err
    cns.ok("--as", "ed", "content", "submit", cid)
    own = cns("--as", "ed", "content", "approve", cid)
    assert own.code == 1 and "may not approve content" in own.err
    cns.ok("--as", "ap", "content", "reject", cid, "--reason", "Thiếu hình minh hoạ")
    cns.ok("--as", "ed", "content", "submit", cid)
    cns.ok("--as", "ap", "content", "approve", cid, "--revision", "1")
    shown = cns.ok("content", "show", cid).out
    assert "content 1 [approved] by ed" in shown and "rejected r1 by ap" in shown
    plan = cns.ok("--json", "--as", "ed", "send", cid, "--scope", "12").json()
    assert plan["total"] == 3 and plan["by_level"] == {"commune": 2, "province": 1}  # type: ignore[index]
    replan = cns.ok("--as", "ed", "send", cid, "--scope", "12")
    assert "already planned: 0 deliveries added, 3 in all" in replan.out
    audit = cns.ok("--json", "audit", "--entity", "content").json()
    assert [a["action"] for a in audit][:3] == ["content.approve", "content.submit", "content.reject"]  # type: ignore[index]


def test_cli_on_postgres(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cns = Cns(pg_url, capsys)
    _setup(cns)
    assert cns.ok("--json", "units", "tree", "--as-of", "2025-07-01").json()["counts"] == {  # type: ignore[index]
        "province": 1,
        "commune": 38,
    }


def test_worker_status_and_control(cns: Cns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a webhook gateway sandbox served by a `cns sandbox` process."""
    import json as _json
    import signal
    import subprocess
    import sys
    import time

    url_file = tmp_path / "urls.json"
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broadcaster.cli.main",
            "--json",
            "sandbox",
            "--only",
            "webhook",
            "--url-file",
            str(url_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            if url_file.exists() and url_file.read_text():
                break
            time.sleep(0.05)
        url = _json.loads(url_file.read_text())["webhook"]
        secret = _json.loads(sandbox.stdout.readline())["credentials"]["webhook"]["secret"]  # type: ignore[union-attr]
        monkeypatch.setenv("CNS_T_HOOK", secret)
        _setup(cns)
        cns.ok("--as", "root", "users", "add", "ed", "--role", "editor")
        cns.ok("--as", "root", "users", "add", "ap", "--role", "approver")
        cns.ok(
            "--as",
            "root",
            "accounts",
            "add",
            "hook",
            "--platform",
            "webhook",
            "--secret",
            "env:CNS_T_HOOK",
            "--base-url",
            url,
        )
        groups = tmp_path / "g.csv"
        groups.write_text(
            "unit_code,account,external_id,title\n12,hook,p,CNS_tỉnh Lai Châu\n"
            "03451,hook,c,CNS_Xã Mù Cả\n03388,hook,d,CNS_Phường Đoàn Kết\n"
        )
        cns.ok("--as", "root", "groups", "import", str(groups))
        cns.ok(
            "--as", "ed", "content", "new", "--title", "T", "--body", "Chào {unit_name}", "--category", "x"
        )
        cns.ok("--as", "ed", "content", "submit", "1")
        cns.ok("--as", "ap", "content", "approve", "1")
        cns.ok(
            "--as", "ed", "send", "1", "--scope", "12", "--quiet-hours", "off"
        )  # whatever the hour of the test
        cns.ok("--as", "ed", "pause", "1")
        paused = cns.ok("--json", "worker", "--until-idle").json()
        assert paused["sent"] == 0  # type: ignore[index]
        again = cns("--as", "ed", "pause", "1")
        assert again.code == 1 and "is paused; only a planned or running one can pause" in again.err
        cns.ok("--as", "ed", "resume", "1")
        done = cns.ok("--json", "worker", "--until-idle").json()
        assert done["sent"] == 3 and done["failed"] == 0  # type: ignore[index]
        status = cns.ok("--json", "status", "1").json()
        assert status["status"] == "done" and status["by_state"] == {"sent": 3}  # type: ignore[index]
        assert status["tier_states"] == {"commune": {"sent": 2}, "province": {"sent": 1}}  # type: ignore[index]
        text = cns.ok("status", "1").out
        assert "[##############################] 3/3" in text
        finished = cns("--as", "ed", "cancel", "1")
        assert finished.code == 1 and "is done: nothing left to cancel" in finished.err
        recalled = cns.ok("--json", "--as", "ed", "recall", "1").json()
        assert recalled["deleted"] == 3 and recalled["failed"] == 0  # type: ignore[index]
        assert cns.ok("--json", "status", "1").json()["by_state"] == {"recalled": 3}  # type: ignore[index]
        cns.ok("--as", "ed", "send", "1", "--scope", "03451", "--again", "--quiet-hours", "off")
        cancelled = cns.ok("--json", "--as", "ed", "cancel", "2").json()
        assert cancelled == {"dispatch": 2, "status": "cancelled", "skipped": 1}
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.communicate(timeout=10)
