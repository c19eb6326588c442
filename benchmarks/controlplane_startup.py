"""How long the local control plane takes to start with cached binaries (until every node is Ready).

    .venv/bin/python benchmarks/controlplane_startup.py [--runs 5]

Also reports the time until a first pod is Ready, the time to stop, where the start time goes
(milestones), the memory (VmRSS) of each component once the pod is Ready, and the disk the
binaries take. Builds the binaries first if they are missing (that build is not counted).
Results: benchmarks/results/controlplane.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chute_devcluster.binaries import KUBERNETES_VERSION, cache_dir, ensure_binaries
from chute_devcluster.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "controlplane.json"
PROBE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "probe", "namespace": "default"},
    "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
}


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def one_run() -> dict[str, Any]:
    """Seconds to start, to get a pod Ready and to stop; milestones; each component's RSS."""
    plane = ControlPlane(tools=ensure_binaries())
    rss: dict[str, float] = {}
    try:
        plane.start()
        pod_started = time.monotonic()
        plane.kubectl("create", "-f", "-", input=json.dumps(PROBE_POD))
        plane.kubectl("wait", "--for=condition=Ready", "pod/probe", "--timeout=60s")
        pod_seconds = time.monotonic() - pod_started
        rss = {name: rss_mb(pid) for name, pid in sorted(plane.pids().items())}
    finally:
        stop_started = time.monotonic()
        plane.stop()
        stop_seconds = time.monotonic() - stop_started
    return {
        "start_seconds": round(plane.startup_seconds, 2),
        "first_pod_ready_seconds": round(pod_seconds, 2),
        "stop_seconds": round(stop_seconds, 2),
        "milestones_seconds": dict(plane.milestones),
        "rss_mb": rss,
        "loadavg_1m_after": float(Path("/proc/loadavg").read_text().split()[0]),
    }


def disk_mb(path: Path) -> float | None:
    """``du -s`` of a directory in MiB, None if it does not exist."""
    if not path.exists():
        return None
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=False).stdout
    return round(int(out.split()[0]) / 1024, 1) if out else None


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs."""
    median = {
        key: round(statistics.median(run[key] for run in runs), 2)
        for key in ("start_seconds", "first_pod_ready_seconds", "stop_seconds")
    }
    components = sorted({name for run in runs for name in run["rss_mb"]})
    rss = {
        name: round(statistics.median(run["rss_mb"].get(name, 0.0) for run in runs), 1) for name in components
    }
    return {**median, "rss_mb": rss, "rss_mb_total": round(sum(rss.values()), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ensure_binaries()
    print(f"Kubernetes {KUBERNETES_VERSION}, default simulated nodes, {args.runs} runs")
    loadavg_before = float(Path("/proc/loadavg").read_text().split()[0])
    runs: list[dict[str, Any]] = []
    for number in range(1, args.runs + 1):
        run = one_run()
        runs.append(run)
        print(
            f"run {number}: start {run['start_seconds']:.2f}s  first pod Ready "
            f"{run['first_pod_ready_seconds']:.2f}s  stop {run['stop_seconds']:.2f}s  "
            f"RSS {sum(run['rss_mb'].values()):.0f} MiB",
            flush=True,
        )
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python benchmarks/controlplane_startup.py --runs {args.runs}",
        "kubernetes": KUBERNETES_VERSION,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": loadavg_before,
        "median": summary(runs),
        "runs": runs,
        "disk_mb": {
            "binaries": disk_mb(cache_dir() / "bin"),
            "go_module_cache": disk_mb(Path.home() / "go" / "pkg" / "mod"),
            "go_build_cache": disk_mb(Path.home() / ".cache" / "go-build"),
        },
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    median = summary(runs)
    print(
        f"median: start {median['start_seconds']:.2f}s  first pod Ready "
        f"{median['first_pod_ready_seconds']:.2f}s  stop {median['stop_seconds']:.2f}s  "
        f"RSS {median['rss_mb_total']:.0f} MiB {median['rss_mb']}"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
