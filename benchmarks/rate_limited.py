"""Benchmark: a rate-limited broadcast against its theoretical minimum.

Method: the sandbox Telegram server runs in its own process with its real limits on (30 messages/s
per bot, 20/min per group, 429 + retry_after when exceeded). N groups (default 600) get one post each
through one bot, sent by the dispatcher with the account's default pacing (Telegram: 30/s, paced at
97 %). Reported: the time from the first claim to the last outcome, against N / 30 s, and the number
of 429 answers the server gave (`rejected_429`, read from the sandbox's state through its log).
Run: `python -m benchmarks.rate_limited [--groups N]`.

With `--real-limit L` the sandbox enforces L messages/s per bot while the account stays configured for
30/s (a limit the dispatcher does not know): the report gives the effective rate against L and the 429
answers per 1,000 sends. Target: >= 90 % of L with at most 3 answers 429 per 1,000 sends. The effective
rate is measured after the first 429 has taught the dispatcher the limit (`--groups` should be a few
thousand so that the learning is a small part of the run); the whole-run figure is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks import world
from broadcaster.bootstrap import make_dispatcher


async def run(work: Path, base: str, n: int) -> tuple[float, dict[str, object]]:
    app, total = await world.build(work, f"sqlite:///{work}/rl.db", base, n, rate=30)
    assert total == n
    dispatcher = make_dispatcher(app, concurrency=64, batch=200)
    start = time.perf_counter()
    stats = await dispatcher.run(asyncio.Event(), until_idle=True, idle_sleep=0.05)
    elapsed = time.perf_counter() - start
    await app.close()
    return elapsed, {"sent": stats.sent, "held": stats.held, "errors": stats.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=600)
    parser.add_argument("--real-limit", type=int, default=0, help="messages/s the sandbox really allows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server, base = world.start_sandbox(work, limits=True)
        try:
            if args.real_limit:
                request = urllib.request.Request(
                    f"{base}/__sim/limits",
                    data=json.dumps({"per_bot": args.real_limit, "per_group": 20}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                urllib.request.urlopen(request).close()
            elapsed, stats = asyncio.run(run(work, base, args.groups))
            with urllib.request.urlopen(f"{base}/__sim/stats") as response:
                sandbox = json.load(response)
        finally:
            server.terminate()
            server.wait(timeout=10)
    if args.real_limit:
        limit = args.real_limit
        rejected = int(sandbox["rejected_429"])
        print(f"{args.groups} groups, one bot configured for 30/s; the sandbox really allows {limit}/s")
        print(
            f"took {elapsed:.2f} s: {args.groups / elapsed:.1f} msg/s = {args.groups / elapsed / limit:.1%} "
            f"of the real limit; 429 answers {rejected} = {rejected / args.groups * 1000:.1f} per 1,000 "
            f"sends; dispatcher {stats}"
        )
        return
    minimum = args.groups / 30
    print(f"{args.groups} groups, one bot, sandbox limits on (30/s per bot, 20/min per group)")
    print(
        f"took {elapsed:.2f} s; theoretical minimum {minimum:.2f} s; "
        f"{(elapsed / minimum - 1):+.1%} over; dispatcher {stats}"
    )
    print(
        f"429 answers from the sandbox: {sandbox['rejected_429']}; "
        f"messages it accepted: {sandbox['messages']}"
    )


if __name__ == "__main__":
    main()
