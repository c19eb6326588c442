"""How long the real node takes to start a pod, with and without the emptyDir volumes a Chute's pod has.

    .venv/bin/python benchmarks/pod_start.py [--runs 5]

A local control plane with its real node (kubelet, containerd, kube-proxy). Per run, one bare pod is
created on the real node for each variant, alternating: ``chute_volumes`` has the volumes and mounts
of a Chute's pod as the project renders them (tests/chutes.py's CPU Chute: ``chute-dshm``,
memory-backed, at /dev/shm and ``chute-cache``, two emptyDirs), and ``no_volumes`` has none; both
run the pause image (no process start of their own to measure).
A watch opened by this script notes, in seconds after the create was sent, when the pod was bound to
the node, when the sandbox had its pod IP and when the container ran. The kubelet creates a pod's
sandbox only after its volumes are mounted, and checks that every 300 ms
(``podAttachAndMountRetryInterval`` in its volume manager), so a pod with volumes is expected to start
about that much later. Writes benchmarks/results/pod-start-real-node.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chutes import cpu_chute  # noqa: E402
from tests.kube_helpers import eventually, get  # noqa: E402
from tests.scale_to_zero_harness import Watcher  # noqa: E402

from chute_devcluster.binaries import ensure_binaries  # noqa: E402
from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.realnode import build_node_images  # noqa: E402
from chute_devcluster.realnode_config import RealNodeSettings  # noqa: E402
from chute_operator.gpus import builtin_catalog  # noqa: E402
from chute_operator.render import render  # noqa: E402
from chute_operator.validation import parse_chute  # noqa: E402
from chute_operator.workload import RenderOptions  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "pod-start-real-node.json"
NAMESPACE = "default"
LABEL = "podstart"
STAGES = ("pod_scheduled", "pod_ip", "model_running")


def chute_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes of a Chute's pod and its model container's mounts, as the project renders them."""
    options = RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:bench")
    rendered = render(parse_chute(cpu_chute("bench", {"namespace": NAMESPACE})), options)
    spec = next(m for m in rendered if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    model = next(c for c in spec["containers"] if c["name"] == "model")
    return spec["volumes"], model["volumeMounts"]


def pod(name: str, image: str, node: str, volumes: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "image": image, "imagePullPolicy": "IfNotPresent"}
    spec: dict[str, Any] = {
        "containers": [container],
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"operator": "Exists"}],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 0,
    }
    if volumes:
        spec["volumes"], container["volumeMounts"] = chute_volumes()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"chutes.ai/chute": LABEL}},
        "spec": spec,
    }


def one_start(cp: ControlPlane, watcher: Watcher, manifest: dict[str, Any]) -> dict[str, float]:
    name = manifest["metadata"]["name"]
    watcher.reset()
    sent = time.time()
    cp.api.create(f"/api/v1/namespaces/{NAMESPACE}/pods", manifest)
    eventually(lambda: all(s in watcher.first for s in STAGES) or None, timeout=60, what=f"{name} running")
    stages = {s: round(watcher.first[s] - sent, 3) for s in STAGES}
    cp.kubectl("delete", "pod", name, "-n", NAMESPACE, "--grace-period=0", "--wait=true")
    eventually(lambda: get(cp, "pod", name, NAMESPACE) is None or None, timeout=60, what=f"{name} gone")
    return stages


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        stage: {
            "median": round(statistics.median(r[stage] for r in runs), 3),
            "max": max(r[stage] for r in runs),
        }
        for stage in STAGES
    } | {
        "scheduled_to_pod_ip_median": round(
            statistics.median(r["pod_ip"] - r["pod_scheduled"] for r in runs), 3
        )
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs 1..20")
    tools = ensure_binaries()
    images = build_node_images()
    settings = RealNodeSettings.from_env()
    runs: dict[str, list[dict[str, float]]] = {"chute_volumes": [], "no_volumes": []}
    with ControlPlane(
        tools=tools, real_node=settings, real_node_images=images, real_node_lock_timeout=900
    ) as cp:
        assert cp.real_node_settings is not None
        node = cp.real_node_settings.name
        eventually(
            lambda: get(cp, "serviceaccount", "default", NAMESPACE), timeout=60, what="default account"
        )
        watcher = Watcher(cp, NAMESPACE, LABEL)
        watcher.start()
        try:
            for index in range(args.runs):
                for variant in runs:
                    manifest = pod(f"podstart-{index}-{variant.replace('_', '-')}", images.sandbox.ref, node,
                                   variant == "chute_volumes")  # fmt: skip
                    runs[variant].append(one_start(cp, watcher, manifest))
        finally:
            watcher.stop()
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "setup": "real node, bare pods running the pause image, alternating variants (chute_volumes: the "
        "volumes and mounts of a rendered Chute's pod); seconds after the "
        "create was sent, seen by a watch of this script: bound to the node (pod_scheduled), pod IP in the "
        "status (pod_ip: sandbox and network up), the container running (model_running)",
        "runs": runs,
        "summary": {variant: summary(measured) for variant, measured in runs.items()},
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
