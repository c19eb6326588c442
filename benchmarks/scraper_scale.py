"""The metrics API's scraper reading N ready pods: its process CPU per pod per second, and how it grows.

For each N, the operator's own :class:`~chute_operator.metricsapi.scraper.Scraper` runs in a child
process (uvloop, as ``chute-operator run``) on N ready pods of simulated (kwok) nodes, shaped as the
operator's store keeps them; the test-only address map sends each pod to a loopback address of
``benchmarks/stats_farm.py`` (one process, one listener per address, the sidecar's document), or, for
the first ``--sidecars``, to a real ``chute-operator sidecar`` process on 127.0.0.1. After one warm-up
round (connections opened), the child's process CPU time (user + system, ``/proc/self/stat``) is read
over ``--seconds`` of scraping at the operator's 2 s interval. CPU figures are process CPU time, not
wall time; the machine is shared, so its load average is recorded.

    .venv/bin/python benchmarks/scraper_scale.py --label before [--pods 100,250,500,1000] [--sidecars 0]

Merges ``{label: {...}}`` into benchmarks/results/scraper-scale.json; ``--profile`` writes a cProfile
summary of the largest N's window to benchmarks/results/scraper-profile-LABEL.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from chute_devcluster.processes import free_port
from chute_operator.metricsapi.samples import Samples
from chute_operator.metricsapi.scraper import NodeKinds, Scraper
from chute_shared.cluster import CHUTE_LABEL, SIDECAR_CONTAINER
from chute_shared.ports import METRICS_PORT_NAME

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scraper-scale.json"
NAMESPACE = "bench"


def pod(index: int) -> dict[str, Any]:
    """A ready pod of Chute ``bench-INDEX`` on a kwok node (what the store keeps of one)."""
    return {
        "metadata": {"namespace": NAMESPACE, "name": f"bench-{index:05d}-7d9f-x",
                     "labels": {CHUTE_LABEL: f"bench-{index:05d}"}},
        "spec": {"nodeName": f"kwok-{index % 2}",
                 "initContainers": [{"name": SIDECAR_CONTAINER,
                                     "ports": [{"name": METRICS_PORT_NAME, "containerPort": 9090}]}]},
        "status": {"phase": "Running", "podIP": f"10.0.{index // 250}.{index % 250 + 1}",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip


def _cpu_seconds(part: slice = slice(11, 13)) -> float:
    """This process's CPU seconds so far (user + system; ``slice(11, 12)``: user only)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[part]) / os.sysconf("SC_CLK_TCK")


async def _child_run(args: argparse.Namespace) -> dict[str, Any]:
    pods = [pod(i) for i in range(args.child)]

    async def no_node(name: str) -> dict[str, Any] | None:
        raise AssertionError("every pod is mapped; no node is looked up")

    scraper = Scraper(
        lambda: pods, NodeKinds(no_node, lambda node: True), Samples(max_age=10.0),
        interval=args.interval, test_only_address_file=args.map,
    )  # fmt: skip
    await scraper.scrape_once()  # warm-up: connections opened
    profile = cProfile.Profile() if args.profile else None
    reads_before, rounds_before = dict(scraper.reads), scraper.rounds
    cpu, user, started = _cpu_seconds(), _cpu_seconds(slice(11, 12)), time.monotonic()
    if profile:
        profile.enable()
    task = asyncio.create_task(scraper.run())
    await asyncio.sleep(args.seconds)
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    if profile:
        profile.disable()
    cpu, user, wall = _cpu_seconds() - cpu, _cpu_seconds(slice(11, 12)) - user, time.monotonic() - started
    ok = scraper.reads["ok"] - reads_before.get("ok", 0)
    failed = scraper.reads["failed"] - reads_before.get("failed", 0)
    result = {
        "pods": args.child,
        "seconds": round(wall, 1),
        "rounds": scraper.rounds - rounds_before,
        "reads_ok": ok,
        "reads_failed": failed,
        "failure_reasons": sorted(set(scraper.reasons.values()))[:3],
        "cpu_seconds": round(cpu, 2),
        "user_cpu_seconds": round(user, 2),
        "core_fraction": round(cpu / wall, 4),
        "cpu_us_per_read": round(1e6 * cpu / max(ok + failed, 1), 1),
        "cpu_us_per_pod_second": round(1e6 * cpu / wall / args.child, 1),
    }
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(35)
        result["profile"] = out.getvalue()
    return result


def child(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_child_run(args))))
    return 0


def _sidecars(count: int, work: Path, stack: ExitStack) -> list[str]:
    """``count`` real sidecars on 127.0.0.1 (their model upstream absent: ``ready`` false, the document
    served all the same); their metrics addresses."""
    found = []
    for i in range(count):
        metrics = free_port()
        log = stack.enter_context((work / f"sidecar-{i}.log").open("ab"))
        process = subprocess.Popen(
            [sys.executable, "-m", "chute_operator", "sidecar", f"--upstream=http://127.0.0.1:{free_port()}",
             "--host=127.0.0.1", f"--port={free_port()}", f"--metrics-port={metrics}",
             f"--admin-port={free_port()}", "--concurrency=4", "--log-format=text"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        stack.callback(_stop, process)
        found.append(f"127.0.0.1:{metrics}")
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for(path: Path, process: subprocess.Popen[bytes], limit: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"stats farm exited {process.returncode}")
        if path.exists() and path.stat().st_size:
            found: dict[str, Any] = json.loads(path.read_text())
            return found
        time.sleep(0.2)
    raise SystemExit(f"stats farm not ready within {limit}s")


def _wait_listening(addresses: list[str], limit: float = 240) -> None:
    import socket

    deadline = time.monotonic() + limit
    for address in addresses:
        host, port = address.rsplit(":", 1)
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{address} not listening within {limit}s") from None
                time.sleep(0.2)


def measure(n: int, args: argparse.Namespace, work: Path, profile: bool) -> dict[str, Any]:
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(dir=work))
        ready = work / "farm.json"
        farm = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "stats_farm.py"), f"--addresses={n}",
             f"--ready-file={ready}", "--seconds=900"]
        )  # fmt: skip
        stack.callback(_stop, farm)
        listed = _wait_for(ready, farm)
        real = _sidecars(min(args.sidecars, n), work, stack)
        _wait_listening(real)
        addresses = real + [f"{a}:{listed['port']}" for a in listed["addresses"][len(real) :]]
        mapping = work / "map.json"
        mapping.write_text(
            json.dumps({f"{NAMESPACE}/{pod(i)['metadata']['name']}": addresses[i] for i in range(n)})
        )
        command = [sys.executable, __file__, f"--child={n}", f"--map={mapping}", f"--seconds={args.seconds}",
                   f"--interval={args.interval}"] + (["--profile"] if profile else [])  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.seconds + 120, check=False
        )
        if done.returncode:
            raise SystemExit(f"scraper child failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["real_sidecars"] = len(real)
        result["profiled"] = profile
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", default="run")
    parser.add_argument("--pods", default="100,250,500,1000")
    parser.add_argument("--sidecars", type=int, default=0, help="real sidecar processes among the pods")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured scraping per N")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--map", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sizes = [int(n) for n in args.pods.split(",")]
    run: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB",
        "cpu": "process CPU time (user + system) of the scraper's process, from /proc/self/stat",
        "interval_seconds": args.interval,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="scraper-scale-") as tmp:
        for n in sizes:
            result = measure(n, args, Path(tmp), args.profile and n == max(sizes))
            profile = result.pop("profile", None)
            if profile:
                (RESULTS.parent / f"scraper-profile-{args.label}.txt").write_text(profile)
            run["sizes"].append(result)
            print(json.dumps(result), flush=True)
    run["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing[args.label] = run
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
