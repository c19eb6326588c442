"""Scale to zero and back on the local cluster's real node: idle -> 0 replicas -> a request wakes it.

    .venv/bin/python benchmarks/scale_to_zero.py [--runs 5] [--load-seconds 8] [--label NAME]

A local control plane with its real node (kubelet, containerd, kube-proxy), the operator with its
metrics API (its scraper reads the real pods' sidecars), and a real activator process on the host
that dials the real pod IPs. The Chute (minInstances 0, maxInstances 2, shutdownAfterSeconds 60)
runs the project image's modelsim with ``--load-seconds`` behind the real sidecar on the real node.
Per run: from the pod Ready to replicas 0 and the pod gone, then one request sent to the activator
(``Host: bench.NAMESPACE.svc.cluster.local``) while at zero, timed to its 200. The added delay is
that time minus the model's load time: the operator's reaction, the pod's scheduling and container
start, the readiness probe, the EndpointSlice's propagation and the activator. The request reaches
the activator directly on loopback, not through the Service's ClusterIP (the activator runs on the
host, whose address cannot be an endpoint). Each request is broken down into the moments it passed
(tests/scale_to_zero_harness.py STAGES: the activator's record of the wake, a watch of the pods and
the Deployment, the containers' log timestamps), in seconds after it was sent; the summary has the
median of each stage and the p95 (nearest rank) of the added delay. Writes
benchmarks/results/scale-to-zero-real-node.json (``--label`` adds ``-NAME`` to the file's name).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube_helpers import eventually  # noqa: E402
from tests.scale_to_zero_harness import IDLE_WINDOW, STAGES, run  # noqa: E402

from chute_operator.devcluster.binaries import ensure_binaries  # noqa: E402
from chute_operator.devcluster.controlplane import ControlPlane  # noqa: E402
from chute_operator.devcluster.realnode import build_node_images  # noqa: E402
from chute_operator.devcluster.realnode_config import RealNodeSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scale-to-zero-real-node.json"


def p95(values: list[float]) -> float:
    """Nearest rank: with fewer than 20 runs it is the largest of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def stage_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    medians: dict[str, float] = {}
    for name, _ in STAGES:
        seen = [r["stages_s"][name] for r in runs if name in r.get("stages_s", {})]
        if seen:
            medians[name] = round(statistics.median(seen), 3)
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=8.0)
    parser.add_argument("--label", default="", help="suffix of the results file (e.g. before)")
    args = parser.parse_args()
    if not (1 <= args.runs <= 10 and 0 <= args.load_seconds <= 120):
        parser.error("--runs 1..10, --load-seconds 0..120")
    tools = ensure_binaries()
    images = build_node_images()
    options: dict[str, Any] = {
        "real_node": RealNodeSettings.from_env(),
        "real_node_images": images,
        "real_node_lock_timeout": 900,
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-zero-") as scratch,
        ControlPlane(tools=tools, **options) as cp,
    ):
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        eventually(
            lambda: cp.kubectl("wait", "--for=condition=Established", "--timeout=5s", "crd/chutes.chutes.ai",
                               check=False).returncode == 0 or None,
            what="CRD established",
        )  # fmt: skip
        runs = run(cp, Path(scratch), images.others[0].ref, args.runs, args.load_seconds)
    added = [r["added_beyond_load_s"] for r in runs if r["status"] == 200]
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "setup": "real node: the project image's modelsim behind the real sidecar; operator with its metrics "
        "API (scrape 1 s, scale-to-zero check 1 s); a real activator process on the host dialling the pod "
        "IP (it forwards once the pod's sidecar says ready); the model answers with no simulated generation "
        f"time; shutdownAfterSeconds {IDLE_WINDOW}, model load {args.load_seconds:g} s",
        "runs": runs,
        "answered_200": f"{len(added)}/{len(runs)}",
        "added_beyond_load_s": {
            "min": min(added),
            "median": round(statistics.median(added), 3),
            "p95": p95(added),
            "max": max(added),
            "target_p95": 1.0,
            "target_met": len(added) == len(runs) and p95(added) < 1.0,
        },
        "stages": {name: what for name, what in STAGES},
        "stage_medians_s": stage_medians(runs),
    }
    path = RESULTS.with_name(f"{RESULTS.stem}-{args.label}.json") if args.label else RESULTS
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
