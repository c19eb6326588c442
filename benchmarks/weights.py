"""A Chute's start with its weights downloaded (cold) against a wake from zero and a scale-up with the
weights already in the cache (warm), on the real node.

    .venv/bin/python benchmarks/weights.py [--runs 3] [--mib 128] [--rate-mib 16]
    .venv/bin/python benchmarks/weights.py --doc-only   # the doc again, from the results

A local control plane with its real node; the operator as a host process (one namespace), its
download Jobs pointed at the test hub (tests/hub.py) in a network namespace outside the cluster,
sending each file at ``--rate-mib`` MiB/s at most; the caches on static local volumes of the real node
(tests/weights_harness.py). Each run applies a Chute (the simulated model server, reading and checking
its ``--mib`` MiB from the cache at 20 s per GiB) whose cache is new (its size differs from the other
runs'), then scales it to 0, to 1 (the wake, without the activator's hold) and to 2 replicas. Times are
seconds, from the write (apply or scale) to the Deployment's ready replicas, polled every 0.2 s.
Writes benchmarks/results/weights-real-node.json and docs/benchmarks/weights.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import operator_fixtures  # noqa: E402
from tests.kube_helpers import apply, condition, eventually, get  # noqa: E402
from tests.operator_fixtures import OperatorProcess  # noqa: E402
from tests.weights_harness import local_storage, outside_hub, weights_chute  # noqa: E402

from chute_devcluster.binaries import ensure_binaries  # noqa: E402
from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.realnode import build_node_images  # noqa: E402
from chute_devcluster.realnode_config import RealNodeSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "weights-real-node.json"
DOC = ROOT / "docs" / "benchmarks" / "weights.md"
NAMESPACE = "weights-bench"
POLL = 0.2
STEPS = (
    ("cold_start_s", "cold start (download, then load)"),
    ("download_s", "of which to Weights=True (Job pod start and download)"),
    ("warm_wake_s", "wake 0 → 1, warm"),
    ("warm_scale_up_s", "scale-up 1 → 2, warm"),
)


def _ready_replicas(cp: ControlPlane, name: str) -> int:
    found = get(cp, "deployment", name, NAMESPACE) or {}
    return int((found.get("status") or {}).get("readyReplicas") or 0)


def _until(cp: ControlPlane, name: str, replicas: int, timeout: float = 600) -> float:
    """Seconds until the Deployment has ``replicas`` ready (polled)."""
    began = time.monotonic()
    deadline = began + timeout
    while time.monotonic() < deadline:
        if _ready_replicas(cp, name) >= replicas:
            return time.monotonic() - began
        time.sleep(POLL)
    raise TimeoutError(f"{name}: {replicas} ready replicas not within {timeout:.0f}s")


def _weights_ready_after(cp: ControlPlane, name: str, began: float, timeout: float = 600) -> float:
    def ready() -> float | None:
        found = condition(get(cp, "chute", name, NAMESPACE), "Weights")
        return time.monotonic() - began if found.get("status") == "True" else None

    return float(eventually(ready, f"{name}: Weights=True", timeout=timeout))


def _no_pods(cp: ControlPlane, name: str) -> bool:
    listed = cp.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"chutes.ai/chute={name}", "-o", "name")
    return not listed.stdout.strip()


def one_run(cp: ControlPlane, image: str, storage_class: str, index: int) -> dict[str, float]:
    name = f"bench-{index}"
    manifest = weights_chute(name, image, storage_class, cache={"size": f"{1024 + index}Mi"})
    began = time.monotonic()
    apply(cp, manifest, NAMESPACE)
    download = _weights_ready_after(cp, name, began)
    _until(cp, name, 1)
    cold = time.monotonic() - began
    cp.kubectl("scale", "chute", name, "-n", NAMESPACE, "--replicas=0")
    eventually(lambda: _no_pods(cp, name), f"{name}: no pods", timeout=180)
    cp.kubectl("scale", "chute", name, "-n", NAMESPACE, "--replicas=1")
    wake = _until(cp, name, 1)
    cp.kubectl("scale", "chute", name, "-n", NAMESPACE, "--replicas=2")
    scale_up = _until(cp, name, 2)
    cp.kubectl("delete", "chute", name, "-n", NAMESPACE, "--wait=true", timeout=180)
    return {"cold_start_s": cold, "download_s": download, "warm_wake_s": wake, "warm_scale_up_s": scale_up}


def measure(runs: int, mib: int, rate_mib: float) -> dict[str, Any]:
    tools = ensure_binaries()
    images = build_node_images()
    settings = RealNodeSettings.from_env()
    load_before = os.getloadavg()[0]
    measured: list[dict[str, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="weights-bench-") as work,
        ControlPlane(
            tools=tools, real_node=settings, real_node_images=images, real_node_lock_timeout=1800
        ) as cp,
    ):
        image = cp.project_image()
        operator_fixtures.sidecar_image = image
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        cp.kubectl("create", "namespace", NAMESPACE)
        eventually(lambda: get(cp, "serviceaccount", "default", NAMESPACE), "default account", timeout=60)
        with (
            outside_hub(Path(work) / "hub", mib, rate_mib * (1 << 20)) as hub,
            local_storage(cp, "bench", volumes=runs + 1) as classes,
        ):
            operator = OperatorProcess(
                cp.kubeconfig, Path(work), "op-bench", (NAMESPACE,), CHUTE_OPERATOR_HF_ENDPOINT=hub
            ).start()
            try:
                for index in range(runs):
                    measured.append(one_run(cp, image, classes["local"], index))
                    print(json.dumps(measured[-1]), flush=True)
            finally:
                operator.stop()
    return {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": round(load_before, 1),
        "load_average_after": round(os.getloadavg()[0], 1),
        "model_mib": mib,
        "hub_rate_mib_per_s": rate_mib,
        "runs": measured,
    }


def _median(results: dict[str, Any], key: str) -> float:
    return float(statistics.median(run[key] for run in results["runs"]))


def doc(results: dict[str, Any]) -> str:
    rows = [f"| run | {' | '.join(what for _, what in STEPS)} |", "| --- |" + " ---: |" * len(STEPS)]
    for index, run in enumerate(results["runs"], 1):
        rows.append(f"| {index} | " + " | ".join(f"{run[key]:.1f} s" for key, _ in STEPS) + " |")
    rows.append("| median | " + " | ".join(f"**{_median(results, key):.1f} s**" for key, _ in STEPS) + " |")
    when = (
        f"{results['date']}; {results['machine']}, load average {results['load_average_before']} "
        f"before and {results['load_average_after']} after"
    )
    mib, rate = results["model_mib"], results["hub_rate_mib_per_s"]
    cold, wake = _median(results, "cold_start_s"), _median(results, "warm_wake_s")
    return f"""# Weights: a cold start against a warm wake

Generated by `benchmarks/weights.py` from `benchmarks/results/{RESULTS.name}` ({when}).

A Chute runs the simulated model server on the real node with a weights cache
([weights.md](../weights.md)): its download Job (the real `huggingface_hub` client in the project's
image) fills a static local volume from the test hub, outside the cluster in a network namespace on
this machine, which sends the {mib} MiB model (two safetensors shards and a config) at {rate:g} MiB/s per
file at most; the model server checks every shard's header and reads the files from the read-only
cache, loading 20 s per GiB read. Each run uses a new cache. Times are from the write (the apply, or
`kubectl scale chute`) to the Deployment's ready replicas.

In short (medians): the first start took {cold:.1f} s, the download Job's share included; a wake from
zero with the weights in the cache {wake:.1f} s, nothing downloaded. The wake here is the scale from 0 to
1 replica; through the activator a held request adds its own hold (docs/scale-to-zero.md).

{chr(10).join(rows)}

What a wake costs with a cache does not grow with the hub's speed or the distance to it: it is the pod's
start and the model's read from the cluster's storage. Without a cache every wake and every scale-up
downloads the model again (an emptyDir starts empty), and its pods need egress to the hub. At a real
model's size (15 GiB for an 8B model in bf16) and 100 MiB/s from the hub, that download alone is about
2.5 minutes a pod. Other work on the machine kept its load average at the figures above (2 cores).
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--rate-mib", type=float, default=16.0)
    parser.add_argument("--doc-only", action="store_true", help="write the doc from the results file")
    args = parser.parse_args()
    if not 1 <= args.runs <= 10:
        parser.error("--runs 1..10")
    if not 1 <= args.mib <= 512:
        parser.error("--mib 1..512")
    if not args.doc_only:
        RESULTS.write_text(json.dumps(measure(args.runs, args.mib, args.rate_mib), indent=2) + "\n")
    DOC.write_text(doc(json.loads(RESULTS.read_text())))
    print(DOC.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
