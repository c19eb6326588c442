"""How fast the operator's custom metrics API lets the HPA scale a Chute up and down.

    .venv/bin/python benchmarks/autoscaling.py [--runs 3]

SIMULATION (see docs/autoscaling.md): a local control plane with kwok nodes, the real HPA controller
(kube-controller-manager, default 15 s sync), the operator's metrics API aggregated by the real
kube-apiserver on loopback, and a real sidecar + modelsim on loopback standing in for the Chute's
first pod. Per run: a Chute (concurrency 4, threshold 0.5, 1-3 replicas, shutdownAfterSeconds 60)
gets 4 streams held open at a random point of the HPA's sync cycle; measured are the seconds from
load start to the HPA's decision (desiredReplicas 2) and to the second replica Ready (a kwok pod:
Ready at once, so no model load time is included), then from load end to the scale-down to 1.
Writes benchmarks/results/autoscaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube_helpers import apply, condition, eventually, get, items  # noqa: E402
from tests.metrics_api_harness import (  # noqa: E402
    LoopbackSidecar,
    autoscaled_chute,
    metrics_api_on_loopback,
)

from chute_operator.devcluster.binaries import ensure_binaries  # noqa: E402
from chute_operator.devcluster.controlplane import ControlPlane  # noqa: E402

SELECTOR = "chutes.ai/chute=bench"
RESULTS = ROOT / "benchmarks" / "results" / "autoscaling.json"


def field(cp: ControlPlane, kind: str, namespace: str, *path: str) -> Any:
    """A field of the object ``bench`` of ``kind``, None while absent."""
    value: Any = get(cp, kind, "bench", namespace)
    for key in path:
        value = (value or {}).get(key)
    return value


def one_run(cp: ControlPlane, index: int, work: Path) -> dict[str, float]:
    namespace = f"bench-autoscaling-{index}"
    cp.kubectl("create", "namespace", namespace)
    eventually(lambda: get(cp, "serviceaccount", "default", namespace), what="default ServiceAccount")
    run_dir = work / namespace
    run_dir.mkdir()
    sidecar = LoopbackSidecar(run_dir)
    try:
        with metrics_api_on_loopback(cp, namespace, run_dir) as (_, overrides):
            apply(cp, autoscaled_chute("bench"), namespace)
            pods = eventually(
                lambda: [
                    p
                    for p in items(cp, "pods", namespace, "chutes.ai/chute=bench")
                    if p["status"].get("podIP")
                ],
                what="the Chute's pod",
            )
            pod = pods[0]["metadata"]["name"]
            overrides.write_text(json.dumps({f"{namespace}/{pod}": f"127.0.0.1:{sidecar.metrics_port}"}))
            eventually(
                lambda: (
                    condition(get(cp, "hpa", "bench", namespace), "ScalingActive").get("status") == "True"
                ),
                what="ScalingActive",
                timeout=180,
            )
            # Load arrives at a random point of the HPA controller's 15 s sync cycle (ScalingActive
            # was just written by a sync: starting at once would always measure the worst case).
            time.sleep(random.uniform(0, 15))
            started = time.monotonic()
            sidecar.open_streams(4)
            eventually(
                lambda: (
                    ((get(cp, "hpa", "bench", namespace) or {}).get("status") or {}).get("desiredReplicas")
                    == 2
                ),
                what="HPA desires 2",
                timeout=120,
            )
            decided = time.monotonic() - started
            eventually(
                lambda: (
                    ((get(cp, "deployment", "bench", namespace) or {}).get("status") or {}).get(
                        "readyReplicas"
                    )
                    == 2
                ),
                what="2 ready",
                timeout=120,
            )
            ready = time.monotonic() - started
            sidecar.close_streams()
            idle = time.monotonic()
            eventually(
                lambda: (
                    ((get(cp, "deployment", "bench", namespace) or {}).get("spec") or {}).get("replicas") == 1
                ),
                what="back to 1",
                timeout=240,
            )
            down = time.monotonic() - idle
    finally:
        sidecar.stop()
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return {
        "to_decision_s": round(decided, 1),
        "to_second_ready_s": round(ready, 1),
        "to_scale_down_s": round(down, 1),
    }


def summary(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [run[key] for run in runs]
    return {"min": min(values), "median": round(statistics.median(values), 1), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tools = ensure_binaries()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-autoscaling-") as scratch, ControlPlane(tools=tools) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        for index in range(args.runs):
            runs.append(one_run(cp, index, Path(scratch)))
            print(f"run {index + 1}: {runs[-1]}", flush=True)
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "setup": "simulation: kwok pods, real sidecar on loopback, real kube-apiserver aggregation and HPA "
        "controller (15 s sync), scrape interval 1 s, concurrency 4, threshold 0.5, 4 streams",
        "runs": runs,
        "load_start_to_hpa_decision_s": summary(runs, "to_decision_s"),
        "load_start_to_second_replica_ready_s": summary(runs, "to_second_ready_s"),
        "load_end_to_scale_down_s (shutdownAfterSeconds 60)": summary(runs, "to_scale_down_s"),
        "for_comparison": {"keda_default_polling_interval_s": 30, "kubeai_default_averaging_window_s": 600},
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
