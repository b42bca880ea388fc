"""`cns demo` end to end, as a user runs it: a real process, embedded data, a temporary database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_json_summary(tmp_path: Path) -> None:
    env = {**os.environ, "CNS_DATABASE_URL": "sqlite:////nonexistent/never-used.db"}
    proc = subprocess.run(
        [sys.executable, "-m", "broadcaster.cli.main", "--json", "demo", "--keep", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    units = summary["units"]
    assert units["2025-06-30"] == {"province": 1, "district": 8, "commune": 106}
    today = summary["as_of"]
    assert units[today]["province"] == 1 and units[today]["commune"] == 38
    assert units[today]["village"] >= 38 * 3  # every commune has villages
    dispatch = summary["dispatch"]
    assert dispatch["total"] == summary["groups"]["total"]
    assert set(dispatch["by_level"]) == {"province", "commune", "village"}
    assert set(dispatch["by_platform"]) == {"telegram", "zalo", "facebook", "webhook"}
    assert dispatch["by_state"] == {"planned": dispatch["total"]}
    assert summary["groups"]["by_platform_mode"]["zalo/relay"] > 0
    assert summary["replanned"] == {"added": 0, "total": dispatch["total"], "same_dispatch": True}
    assert summary["groups_check"]["mismatched"] == 0
    sending = summary["sending"]
    assert sending["status"] == "done" and sending["errors"] == {}
    relay = summary["groups"]["by_platform_mode"]["zalo/relay"]
    confirmed = summary["engagement"]["people"]["confirmed"]
    assert sending["by_state"] == {  # relay posts wait for their leader; two in three confirmed in the demo
        "sent": dispatch["total"] - relay,
        "awaiting_confirmation": relay - confirmed,
        "confirmed": confirmed,
    }
    received = sending["sandbox_messages"]
    assert received["telegram"] == dispatch["by_platform"]["telegram"]
    assert received["webhook"] == dispatch["by_platform"]["webhook"] and received["facebook"] == 1
    assert received["zalo"] == summary["groups"]["by_platform_mode"]["zalo/direct"] + 3 * relay
    # People answered through the real webhook endpoints, and the report counts what happened.
    inbound = summary["engagement"]["inbound_events"]
    assert inbound.get("done", 0) > 0 and not inbound.get("failed") and not inbound.get("pending")
    totals = summary["report"]["totals"]
    assert totals["posts_delivered"] == dispatch["total"] and totals["groups"] == summary["groups"]["total"]
    assert totals["posts_confirmed"] == summary["engagement"]["people"]["confirmed"] > 0
    assert totals["clicks"] == summary["engagement"]["people"]["link_opened"] > 0  # previews not counted
    assert totals["replies"] > 0 and totals["reactions"] > 0
    # Direct groups were counted once through the platforms; relay groups are not ours: unknown, not 0.
    counted = summary["engagement"]["groups_counted"]
    assert counted == summary["groups"]["total"] - relay and totals["members"] > counted
    assert totals["members_unknown_groups"] == relay
    assert summary["report"]["tiers"] == ["province", "commune", "village"]
    assert (tmp_path / "demo" / "cns-demo.db").exists()
    # The database holds secret references, never the demo secrets themselves.
    secrets = json.loads((tmp_path / "demo" / "secrets.json").read_text())
    raw = b"".join(p.read_bytes() for p in (tmp_path / "demo").glob("cns-demo.db*"))
    assert all(value.encode() not in raw for value in secrets.values())


def test_demo_text_removes_its_temporary_folder() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "broadcaster.cli.main", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "deliveries planned" in proc.stdout and "dispatch done" in proc.stdout and "NOT done" in proc.stdout
    )
    folder = next(line.split()[1] for line in proc.stdout.splitlines() if line.strip().startswith("database"))
    assert not Path(folder).exists()
