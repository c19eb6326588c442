"""What the activator pays to listen on every port of its range (one per Chute that may be at zero):
the time to open the listening sockets and serve them, and the memory they add, in a fresh process.

Run: .venv/bin/python benchmarks/activator_ports.py [--ranges 100 1000 10000]
Writes benchmarks/results/activator-ports.json. On a loopback address of its own; nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "activator-ports.json"
FIRST_PORT = 20000

CHILD = """
import asyncio, json, sys, time
from aiohttp import web
from chute_activator.main import listen_on_range
from chute_devcluster.processes import free_loopback

def rss_kib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

async def main(first, last):
    async def answer(request):
        return web.Response(text="ok")
    runner = web.ServerRunner(web.Server(answer), access_log=None)
    await runner.setup()
    host = free_loopback((first, last))
    before, started = rss_kib(), time.perf_counter()
    listening, taken = listen_on_range(host, (first, last))
    for sock in listening:
        await web.SockSite(runner, sock).start()
    seconds = time.perf_counter() - started
    print(json.dumps({"ports": len(listening), "taken": len(taken), "open_s": round(seconds, 3),
                      "added_rss_mib": round((rss_kib() - before) / 1024, 1)}))
    await runner.cleanup()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def measure(size: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(FIRST_PORT), str(FIRST_PORT + size - 1)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranges", type=int, nargs="+", default=[100, 1000, 10000])
    args = parser.parse_args()
    rows = []
    for size in args.ranges:
        rows.append({"range": size, **measure(size)})
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "load": os.getloadavg()},
                "command": "benchmarks/activator_ports.py",
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
