"""Scale-out: three `cns worker` processes on one PostgreSQL, one killed (-9) mid-run, deliver a dispatch
with nothing lost and duplicates only among the killed worker's sends in flight, all counted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks import world

GROUPS = 4000
CONCURRENCY = 16


def _states(url: str) -> tuple[dict[str, int], int]:
    return asyncio.run(world.delivery_counts(url))


def test_three_workers_one_killed(pg_url: str, tmp_path: Path) -> None:
    server, base = world.start_sandbox(tmp_path)
    workers: list[subprocess.Popen[bytes]] = []
    try:

        async def build() -> int:
            app, total = await world.build(tmp_path, pg_url, base, GROUPS)
            await app.close()
            return total

        assert asyncio.run(build()) == GROUPS
        env = {**os.environ, "CNS_DATABASE_URL": pg_url, world.TOKEN_ENV: world.TOKEN}
        command = [
            sys.executable,
            "-m",
            "broadcaster.cli.main",
            "worker",
            "--until-idle",
            "--lease",
            "5",
            "--concurrency",
            str(CONCURRENCY),
            "--batch",
            "100",
        ]
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        for _ in range(200):  # kill the first worker once the broadcast is well under way
            states, _ = _states(pg_url)
            if states.get("sent", 0) >= GROUPS // 5:
                break
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        for survivor in workers[1:]:
            _, err = survivor.communicate(timeout=120)
            assert survivor.returncode == 0, err.decode()
        states, resent = _states(pg_url)
        with urllib.request.urlopen(f"{base}/__sim/messages") as response:
            messages = json.load(response)
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
            process.communicate()
        server.terminate()
        server.wait(timeout=10)
    assert states == {"sent": GROUPS}  # nothing lost, nothing stuck
    per_chat = Counter(m["chat"]["id"] for m in messages)
    assert len(per_chat) == GROUPS  # every group received the post
    duplicates = sum(n - 1 for n in per_chat.values())
    assert duplicates <= resent  # every duplicate is counted in the status...
    assert resent <= 2 * 100  # ...only the killed worker's claimed rows (two batches) were re-sent...
    # ...and they are at most the killed worker's sends in flight (a send holds its slot until its outcome
    # is committed).
    assert duplicates <= CONCURRENCY
