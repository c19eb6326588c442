"""How long the local control plane takes to start with cached binaries (until every node is Ready).

    .venv/bin/python benchmarks/controlplane_startup.py [--runs 5]

Also reports the time until a first pod is Ready and the time to stop. Builds the binaries first
if they are missing (that build is not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from chute_operator.devcluster.binaries import KUBERNETES_VERSION, ensure_binaries
from chute_operator.devcluster.controlplane import ControlPlane

PROBE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "probe", "namespace": "default"},
    "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
}


def one_run() -> tuple[float, float, float]:
    """Seconds to start, then to get a pod Ready, then to stop."""
    plane = ControlPlane(tools=ensure_binaries())
    try:
        plane.start()
        pod_started = time.monotonic()
        plane.kubectl("create", "-f", "-", input=json.dumps(PROBE_POD))
        plane.kubectl("wait", "--for=condition=Ready", "pod/probe", "--timeout=60s")
        pod_seconds = time.monotonic() - pod_started
    finally:
        stop_started = time.monotonic()
        plane.stop()
        stop_seconds = time.monotonic() - stop_started
    return plane.startup_seconds, pod_seconds, stop_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ensure_binaries()
    print(f"Kubernetes {KUBERNETES_VERSION}, default simulated nodes, {args.runs} runs")
    starts: list[float] = []
    for run in range(1, args.runs + 1):
        start, pod, stop = one_run()
        starts.append(start)
        print(f"run {run}: start {start:.2f}s  first pod Ready {pod:.2f}s  stop {stop:.2f}s", flush=True)
    print(f"startup: median {statistics.median(starts):.2f}s  min {min(starts):.2f}s  max {max(starts):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
