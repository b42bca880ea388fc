"""Benchmark: peak memory (RSS high-water mark) of `cns worker` sending a 100,000-delivery dispatch.

Method: the world (100,000 village groups, one planned dispatch) is built in this process; then
`cns worker --until-idle` runs as its own process against the sandbox Telegram server (limits off, a
third process), and its VmHWM is read from /proc while it runs, the last reading just before it exits.
Run: `python -m benchmarks.worker_memory [--groups N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import world


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work}/mem.db"
        server, base = world.start_sandbox(work)
        try:

            async def build() -> int:
                app, total = await world.build(work, url, base, args.groups)
                await app.close()
                return total

            total = asyncio.run(build())
            env = {**os.environ, "CNS_DATABASE_URL": url, world.TOKEN_ENV: world.TOKEN}
            start = time.perf_counter()
            worker = subprocess.Popen(
                [sys.executable, "-m", "broadcaster.cli.main", "worker", "--until-idle"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            peak = 0.0
            while worker.poll() is None:
                peak = max(peak, _hwm_mb(worker.pid))
                time.sleep(0.2)
            out, err = worker.communicate()
            elapsed = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{total:,} deliveries sent by one `cns worker` in {elapsed:.1f} s (exit {worker.returncode})")
    print(f"worker peak RSS (VmHWM): {peak:.0f} MB; {out.strip() or err.strip()[-300:]}")


if __name__ == "__main__":
    main()
