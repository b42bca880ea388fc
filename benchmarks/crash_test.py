"""Crash test: a 10,000-delivery dispatch, its `cns worker` killed with SIGKILL three times at random
moments and restarted each time: nothing may be lost, and duplicates may not exceed the sends in flight.

Method: the sandbox Telegram server (limits off) in its own process records every message; a SQLite
database (or --db URL) holds the dispatch; `cns worker --until-idle --lease 5 --concurrency C` runs as
a child process; at a random moment (seeded) it gets SIGKILL, the rows left `sending` are counted (the
sends in flight at the kill), and a new worker starts. After the third kill the last worker finishes.
Lost = groups that never received the post; duplicates = extra copies the sandbox received.
Run: `python -m benchmarks.crash_test [--groups N] [--concurrency C] [--seed S] [--db URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks import world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        url = stack.enter_context(world.fresh_database(args.db, work, "crash.db"))
        server, base = world.start_sandbox(work)
        try:

            async def build() -> None:
                app, _ = await world.build(work, url, base, args.groups)
                await app.close()

            asyncio.run(build())
            env = {**os.environ, "CNS_DATABASE_URL": url, world.TOKEN_ENV: world.TOKEN}
            command = [
                sys.executable,
                "-m",
                "broadcaster.cli.main",
                "worker",
                "--until-idle",
                "--lease",
                "5",
                "--concurrency",
                str(args.concurrency),
                "--batch",
                "200",
            ]
            in_flight: list[int] = []
            started = time.perf_counter()
            for _ in range(args.kills):
                worker = subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                time.sleep(rng.uniform(1.5, 3.5))
                worker.send_signal(signal.SIGKILL)
                worker.communicate()
                states, _ = asyncio.run(world.delivery_counts(url))
                in_flight.append(states.get("sending", 0))
            last = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - started
            states, resent = asyncio.run(world.delivery_counts(url))
            with urllib.request.urlopen(f"{base}/__sim/messages") as response:
                messages = json.load(response)
        finally:
            server.terminate()
            server.wait(timeout=10)
    per_chat = Counter(m["chat"]["id"] for m in messages)
    lost = args.groups - len(per_chat)
    duplicates = sum(n - 1 for n in per_chat.values())
    print(
        f"{args.groups:,} deliveries, worker killed {args.kills} times (seed {args.seed}), "
        f"concurrency {args.concurrency}; {elapsed:.1f} s in all; last worker exit {last.returncode}"
    )
    print(f"claimed and unfinished at each kill (rows left 'sending'): {in_flight}")
    print(f"final states: {states}; re-sent after a crash (counted in status): {resent}")
    print(
        f"lost: {lost}; duplicates received by the platform: {duplicates} "
        f"(bound: {args.concurrency} sends in flight x {args.kills} kills = {args.concurrency * args.kills})"
    )


if __name__ == "__main__":
    main()
