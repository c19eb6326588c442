"""What the activator's probe loop pays to find a waiting Chute's pods: ``KubeSource._addresses`` per
call, with N cached pods (3 per Chute), offline (no API server: the pods are fed as watch events).

The probe loop calls it every 0.05 s for each Chute with held requests, on a 50m CPU request. Also
measured: one pod watch event (MODIFIED), which now keeps the index up to date too.

Run: .venv/bin/python benchmarks/activator_probe.py --label after [--pods 3000]
Merges ``{label: {...}}`` into benchmarks/results/activator-probe.json (run it on the code before a
change with ``--label before``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import timeit
from pathlib import Path
from typing import Any

from lightkube.resources.core_v1 import Pod

from chute_activator.holding import Holder
from chute_activator.kube import KubeSource
from chute_activator.metrics import Metrics
from chute_activator.state import Key
from chute_shared.cluster import CHUTE_LABEL, SIDECAR_CONTAINER
from chute_shared.ports import SERVING_PORT_NAME

RESULTS = Path(__file__).resolve().parent / "results" / "activator-probe.json"
PODS_PER_CHUTE = 3
NAMESPACES = 10


def pod(namespace: str, chute: str, index: int, serial: int) -> dict[str, Any]:
    """A running pod of the Chute whose sidecar runs (a candidate for the probe)."""
    return {
        "metadata": {"namespace": namespace, "name": f"{chute}-{index}", "resourceVersion": str(serial),
                     "labels": {CHUTE_LABEL: chute}},
        "spec": {"initContainers": [{"name": SIDECAR_CONTAINER,
                                     "ports": [{"name": SERVING_PORT_NAME, "containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": f"10.{serial // 65536}.{serial // 256 % 256}.{serial % 256}",
                   "initContainerStatuses": [{"name": SIDECAR_CONTAINER, "state": {"running": {}}}]},
    }  # fmt: skip


def measure(pods: int) -> dict[str, Any]:
    async def wake(key: Key) -> None:
        pass

    source = KubeSource(None, Holder(wake, Metrics()), ("bench",))  # type: ignore[arg-type]
    chutes = max(1, pods // PODS_PER_CHUTE)
    for serial in range(pods):
        c = serial // PODS_PER_CHUTE
        source._event(
            Pod, "ADDED", pod(f"ns-{c % NAMESPACES}", f"chute-{c}", serial % PODS_PER_CHUTE, serial)
        )
    key = (f"ns-{(chutes // 2) % NAMESPACES}", f"chute-{chutes // 2}")
    assert len(source._addresses(key)) == PODS_PER_CHUTE
    calls = 2000
    per_call = min(timeit.repeat(lambda: source._addresses(key), number=calls, repeat=5)) / calls
    changed = pod(key[0], key[1], 0, pods + 1)
    events = 20000
    per_event = min(timeit.repeat(lambda: source._event(Pod, "MODIFIED", changed), number=events, repeat=5))
    return {
        "pods": pods,
        "pods_of_the_chute": PODS_PER_CHUTE,
        "addresses_ms_per_call": round(per_call * 1000, 4),
        "probe_loop_cpu_share_per_waiting_chute": round(per_call / 0.05, 5),
        "pod_event_us": round(per_event / events * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="before or after")
    parser.add_argument("--pods", type=int, default=3000)
    args = parser.parse_args()
    result = measure(args.pods)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "operator"], capture_output=True, text=True, check=False
    )
    result["commit"] = commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    document = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    document[args.label] = result
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({args.label: result}))


if __name__ == "__main__":
    main()
