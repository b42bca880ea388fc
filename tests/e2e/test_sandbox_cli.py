"""`cns sandbox` as a user runs it: a separate process serving the four platforms until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp


async def test_cns_sandbox_serves_every_platform(tmp_path: Path) -> None:
    url_file = tmp_path / "urls.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broadcaster.cli.main",
        "--json",
        "sandbox",
        "--url-file",
        str(url_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(200):
            if url_file.exists() and url_file.read_text():
                break
            await asyncio.sleep(0.05)
        urls = json.loads(url_file.read_text())
        assert set(urls) == {"telegram", "zalo", "facebook", "webhook"}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{urls['telegram']}/bot123456:ABCDEFGHIJKLMNOP/getMe") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            async with session.get(f"{urls['zalo']}/v2.0/oa/getoa", headers={"access_token": "nope"}) as r:
                assert r.status == 200 and (await r.json())["error"] == -216
            async with session.get(f"{urls['facebook']}/v21.0/me", params={"access_token": "nope"}) as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == 190
            async with session.post(f"{urls['webhook']}/v1/messages", data=b"{}") as r:
                assert r.status == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 0, err
    printed = json.loads(out.decode().splitlines()[0])
    assert printed["urls"] == urls and printed["credentials"]["telegram"]["token"]
