"""Benchmark: the Telegram adapter's send rate against the sandbox Bot API server in another process.

Method: `cns sandbox --only telegram --no-limits` runs in a separate process (rate limits off, no
faults). In this process, first the raw aiohttp rate: N form-encoded `sendMessage` POSTs with C in flight
on one session (the ceiling of this client stack against this server). Then the adapter: N
`TelegramSender.send` calls (sendMessage as a JSON body on the adapter's aiohttp session, the message id
read from the answer, any refusal read by PTB) with C in flight, each to its own group. Both use the same
server process, N and C, and are printed side by side. Run: `python benchmarks/telegram_send.py
[--requests N] [--concurrency C]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from adapters.telegram import TelegramSender
from broadcaster.domain.ports import RenderedMessage, Target
from broadcaster.domain.secrets import Secret

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
TEXT = "<b>Thông báo</b>\n\nBà con bản Mù Cả ơi, từ nay có thể nộp hồ sơ trực tuyến trên Cổng Dịch vụ công."


async def _pool(n: int, concurrency: int, job: object) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await job(i)  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def raw_rate(base: str, n: int, concurrency: int) -> float:
    url = f"{base}/bot{TOKEN}/sendMessage"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int) -> None:
            data = {"chat_id": str(-1_000_000_000 - i % 5000), "text": TEXT, "parse_mode": "HTML"}
            async with session.post(url, data=data) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"raw POST failed: HTTP {response.status}")

        await post(0)  # warm the connection pool
        return n / await _pool(n, concurrency, post)


async def adapter_rate(base: str, n: int, concurrency: int) -> float:
    sender = TelegramSender(Secret(TOKEN), base_url=base, connections=concurrency)
    message = RenderedMessage(parts=(TEXT,), fmt="html", plain_parts=(TEXT,))
    try:

        async def send(i: int) -> None:
            await sender.send(Target("telegram", str(-1_000_000_000 - i % 5000)), message, f"d{i}")

        await send(0)  # getMe and the pool, outside the timing
        return n / await _pool(n, concurrency, send)
    finally:
        await sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "urls.json"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broadcaster.cli.main",
                "sandbox",
                "--only",
                "telegram",
                "--no-limits",
                "--url-file",
                str(url_file),
            ],
            stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            for _ in range(200):
                if url_file.exists() and url_file.read_text():
                    break
                time.sleep(0.05)
            base = json.loads(url_file.read_text())["telegram"]
            raw = asyncio.run(raw_rate(base, args.requests, args.concurrency))
            adapter = asyncio.run(adapter_rate(base, args.requests, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(
        f"sandbox Telegram server in a separate process, rate limits off; {args.requests:,} requests, "
        f"{args.concurrency} in flight"
    )
    print(f"raw aiohttp POST sendMessage: {raw:,.0f} requests/s")
    print(f"TelegramSender.send: {adapter:,.0f} sends/s ({adapter / raw:.0%} of raw)")


if __name__ == "__main__":
    main()
