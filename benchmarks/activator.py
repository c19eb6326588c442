"""What the activator adds to a request, on loopback.

    .venv/bin/python benchmarks/activator.py [--runs 20] [--requests 300]

1. Held through a wake: a request to a Chute at zero is held; the wake callback starts the simulated
   model (``chute_modelsim``, in this process, no load time) and the Chute's endpoint is reported
   ready as the operator's EndpointSlice would report it. Measured: from the endpoint being reported
   to the response's last byte, minus a direct request's latency to the same model right after (the
   activator's own share of a scale-from-zero; the operator, the scheduler, the pod's start and its
   model load come on top and are not measured here).
2. Passed through while ready: sequential small completions directly to the model and through the
   activator (what a request pays in the moment both the activator and a replica are endpoints; once
   the operator removes the activator's EndpointSlice, requests no longer pass it at all).

Writes benchmarks/results/activator.json. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from chute_activator.app import Activator  # noqa: E402
from chute_activator.holding import Holder  # noqa: E402
from chute_activator.metrics import Metrics  # noqa: E402
from chute_activator.state import ChuteState  # noqa: E402
from chute_modelsim.config import Config  # noqa: E402
from chute_modelsim.server import ModelServer  # noqa: E402

KEY = ("bench", "llm")
HOST = {"Host": "llm.bench.svc.cluster.local"}
BODY = {"model": "chute-modelsim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
MODEL = Config(host="127.0.0.1", port=0, admin_port=None, loading="refuse",
               time_to_first_token_seconds=0.0, tokens_per_second=0.0)  # fmt: skip


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2),
    }


async def start_activator(holder: Holder) -> tuple[web.ServerRunner, Activator, int]:
    activator = Activator(holder, max_body_bytes=1 << 20, request_timeout=60)
    await activator.start()
    runner = web.ServerRunner(web.Server(activator.handle), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, activator, runner.addresses[0][1]


async def held_through_wake(session: aiohttp.ClientSession, runs: int) -> list[float]:
    added: list[float] = []
    for _ in range(runs):
        woken = asyncio.Event()

        async def wake(key: tuple[str, str], woken: asyncio.Event = woken) -> None:
            woken.set()

        holder = Holder(wake, Metrics(), queue_limit=10, max_wait_seconds=30)
        holder.mark_synced()
        runner, activator, port = await start_activator(holder)
        holder.update(KEY, ChuteState(port=port))  # requests on this port are the Chute's
        model = ModelServer(replace(MODEL), exit_process=lambda code: None)
        try:

            async def call(port: int = port) -> float:
                async with session.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY, headers=HOST
                ) as r:
                    await r.read()
                    assert r.status == 200
                return time.perf_counter()

            request = asyncio.create_task(call())
            await asyncio.wait_for(woken.wait(), 10)
            await model.start()
            while model.port is None:  # noqa: ASYNC110 (bound right after its loaded event)
                await asyncio.sleep(0.001)
            reported = time.perf_counter()
            holder.update(KEY, ChuteState(endpoints=(f"127.0.0.1:{model.port}",), port=port))
            done = await request
            direct_start = time.perf_counter()
            async with session.post(f"http://127.0.0.1:{model.port}/v1/chat/completions", json=BODY) as r:
                await r.read()
            direct = time.perf_counter() - direct_start
            added.append(max(0.0, (done - reported) - direct))
        finally:
            await runner.cleanup()
            await activator.close()
            await model.stop()
    return added


async def passed_through(session: aiohttp.ClientSession, requests: int) -> tuple[list[float], list[float]]:
    model = ModelServer(replace(MODEL), exit_process=lambda code: None)
    await model.start()
    while model.port is None:  # noqa: ASYNC110 (bound right after its loaded event)
        await asyncio.sleep(0.001)

    async def wake(key: tuple[str, str]) -> None:
        return None

    holder = Holder(wake, Metrics())
    holder.mark_synced()
    runner, activator, port = await start_activator(holder)
    holder.update(KEY, ChuteState(endpoints=(f"127.0.0.1:{model.port}",), port=port))
    direct: list[float] = []
    through: list[float] = []
    try:
        for i in range(requests):
            for url, sink in (
                (f"http://127.0.0.1:{model.port}/v1/chat/completions", direct),
                (f"http://127.0.0.1:{port}/v1/chat/completions", through),
            ):
                started = time.perf_counter()
                async with session.post(url, json=BODY, headers=HOST) as r:
                    await r.read()
                if i >= 10:  # warm-up excluded
                    sink.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
        await activator.close()
        await model.stop()
    return direct, through


async def main(runs: int, requests: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        added = await held_through_wake(session, runs)
        direct, through = await passed_through(session, requests)
    return {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "held_through_wake": {
            "runs": runs,
            "added_after_ready": summary(added),
            "what": "endpoint reported ready -> response complete, minus a direct request's latency",
        },
        "passed_through_while_ready": {
            "requests": len(direct),
            "direct": summary(direct),
            "through_activator": summary(through),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    if not (1 <= args.runs <= 200 and 10 < args.requests <= 5000):
        parser.error("--runs 1..200, --requests 11..5000")
    result = asyncio.run(main(args.runs, args.requests))
    out = ROOT / "benchmarks" / "results" / "activator.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
