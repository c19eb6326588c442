"""The activator's worst-case memory: request bodies held at its bound (``--max-held-body-bytes``).

    .venv/bin/python benchmarks/activator_body_memory.py [--body-mib 8] [--extra 4] [--out FILE]

On loopback, three real processes: the activator (``python -m chute_activator``, its defaults but
``--queue-limit``), fed by the tests' stand-in API (``tests/unit/chute_activator/fake_api.py``), which
lists one Chute at zero and one pod whose sidecar (``python -m chute_sidecar``) fronts the simulated
model server (``python -m chute_modelsim``), not started yet. Then:

1. as many concurrent bodies of ``--body-mib`` MiB as the bound holds (alternately with a
   Content-Length and chunked), each a chat completion; all are held (the model is down);
2. ``--extra`` more: each must be answered 503 ``HeldBytesFull`` with Retry-After (the bound is
   reached), never cut;
3. the model starts; the activator's probe finds the sidecar ready and forwards every held body.

The activator's RSS is sampled every 0.05 s from /proc and its peak read from ``VmHWM`` (the kernel's
high-water mark of the process's resident memory). Writes
benchmarks/results/activator-body-memory.json. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from tests.unit.chute_activator.fake_api import LOOPBACK, FakeApi, chute  # noqa: E402

from chute_activator.config import Config  # noqa: E402
from chute_devcluster.processes import free_loopback  # noqa: E402
from chute_shared.cluster import CHUTE_LABEL, SIDECAR_CONTAINER  # noqa: E402
from chute_shared.ports import ACTIVATOR_CHUTE_PORTS, SERVING_PORT_NAME  # noqa: E402

MIB = 1024 * 1024
KEY = ("bench", "llm")
OUT = ROOT / "benchmarks" / "results" / "activator-body-memory.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def pod(port: int) -> dict[str, Any]:
    """A running pod of the Chute whose sidecar serves on ``127.0.0.1:port``."""
    sidecar = {"name": SIDECAR_CONTAINER, "ports": [{"name": SERVING_PORT_NAME, "containerPort": port}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": KEY[0], "name": "llm-0", "labels": {CHUTE_LABEL: KEY[1]}},
        "spec": {"initContainers": [sidecar], "containers": [{"name": "model"}]},
        "status": {
            "phase": "Running",
            "podIP": LOOPBACK,
            "initContainerStatuses": [
                {
                    **{"name": SIDECAR_CONTAINER, "image": "chute-operator", "imageID": ""},
                    **{"ready": True, "restartCount": 0, "state": {"running": {}}},
                }
            ],
        },
    }


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    """One of the programs, from this checkout (its logs shown with BENCH_VERBOSE=1)."""
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return subprocess.Popen(
        [sys.executable, *argv], env=env, **({} if os.environ.get("BENCH_VERBOSE") else quiet)
    )


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def chat_body(size: int) -> bytes:
    """A chat completion of exactly ``size`` bytes (its prompt pads it)."""
    head, tail = b'{"model":"chute-modelsim","max_tokens":1,"messages":[{"role":"user","content":"', b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 256 * 1024):
        yield body[start : start + 256 * 1024]


async def queue_length(session: aiohttp.ClientSession, metrics: str) -> float:
    async with session.get(f"http://{metrics}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("chute_activator_queue_length{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bound = Config().max_held_body_bytes
    size = args.body_mib * MIB
    held_count = bound // size
    body = chat_body(size)
    sidecar_port, model_port = free_port(), free_port()
    host = free_loopback(ACTIVATOR_CHUTE_PORTS)  # it listens on every port of the range, as deployed
    port = ACTIVATOR_CHUTE_PORTS[0]
    api = FakeApi([{**chute(*KEY), "status": {"activatorPort": port}}], pods=[pod(sidecar_port)])
    await api.start()
    workdir = Path(tempfile.mkdtemp(prefix="activator-body-memory-"))
    (workdir / "kubeconfig").write_text(api.kubeconfig())
    metrics_port = free_port()
    activator = spawn(
        [
            *("-m", "chute_activator", "--host", host),
            *("--metrics-port", str(metrics_port), "--kubeconfig", str(workdir / "kubeconfig")),
            *("-n", KEY[0], "--queue-limit", str(held_count + args.extra)),
        ]
    )
    sidecar = spawn(
        [
            *("-m", "chute_sidecar", "--host", LOOPBACK, "--port", str(sidecar_port)),
            *("--metrics-port", str(free_port()), "--admin-port", str(free_port())),
            *("--upstream", f"http://{LOOPBACK}:{model_port}", "--concurrency", str(held_count + 1)),
        ]
    )
    model: subprocess.Popen[bytes] | None = None
    samples: list[tuple[float, int]] = []
    sampling = True

    async def sample() -> None:
        start = time.monotonic()
        while sampling:
            samples.append((round(time.monotonic() - start, 2), status_kib(activator.pid, "VmRSS")))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=300)
        ) as session:

            async def ready() -> bool:
                async with session.get(f"http://{host}:{metrics_port}/readyz") as response:
                    return response.status == 200

            await until(ready, 30, "the activator's /readyz")
            await asyncio.sleep(0.5)
            baseline = status_kib(activator.pid, "VmRSS")

            async def post(index: int) -> tuple[int, str | None, str]:
                data: bytes | AsyncIterator[bytes] = body if index % 2 == 0 else chunked(body)
                headers = {"Content-Type": "application/json"}
                url = f"http://{host}:{port}/v1/chat/completions"
                async with session.post(url, data=data, headers=headers) as response:
                    text = await response.text()
                    reason = ""
                    if response.status != 200 and response.content_type == "application/json":
                        reason = str(json.loads(text).get("error", {}).get("reason", ""))
                    return response.status, response.headers.get("Retry-After"), reason

            started = time.monotonic()
            held = [asyncio.create_task(post(i)) for i in range(held_count)]

            async def all_held() -> bool:
                return await queue_length(session, f"{host}:{metrics_port}") == held_count

            await until(all_held, 120, f"{held_count} held requests")
            held_at = round(time.monotonic() - started, 2)
            rss_held = status_kib(activator.pid, "VmRSS")
            extra = await asyncio.gather(*(post(i) for i in range(args.extra)))
            model = spawn(
                [
                    *("-m", "chute_modelsim", "--host", LOOPBACK, "--port", str(model_port)),
                    *("--admin-port", "off", "--time-to-first-token-seconds", "0"),
                    *("--tokens-per-second", "0", "--max-model-len", "1000000000"),
                ]
            )
            answers = await asyncio.gather(*held)
            answered_at = round(time.monotonic() - started, 2)
            await asyncio.sleep(1.0)
            rss_after = status_kib(activator.pid, "VmRSS")
            peak = status_kib(activator.pid, "VmHWM")
    finally:
        sampling = False
        await sampler
        for process in (activator, sidecar, model):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (activator, sidecar, model):
            if process is not None:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        await api.stop()
    return {
        "command": "benchmarks/activator_body_memory.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "activator": {
            "max_held_body_bytes": bound,
            "max_body_bytes": Config().max_body_bytes,
            "queue_limit": held_count + args.extra,
        },
        "body_bytes": size,
        "held": held_count,
        "held_statuses": sorted(status for status, _, _ in answers),
        "extra": args.extra,
        "extra_answers": [list(answer) for answer in extra],
        "seconds": {"all_held": held_at, "all_answered": answered_at},
        "rss_mib": {
            "baseline": round(baseline / 1024, 1),
            "all_held": round(rss_held / 1024, 1),
            "peak": round(peak / 1024, 1),
            "after": round(rss_after / 1024, 1),
        },
        "rss_samples_kib": samples[:: max(1, len(samples) // 400)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-mib", type=int, default=8, help="size of each body (MiB)")
    parser.add_argument("--extra", type=int, default=4, help="bodies sent once the bound is reached")
    parser.add_argument("--out", type=Path, default=OUT, help="results file")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples_kib"}, indent=1))


if __name__ == "__main__":
    main()
