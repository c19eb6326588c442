"""The real node's costs: building its binaries, starting it, a Chute's first answer, the memory.

    .venv/bin/python benchmarks/realnode.py [--runs 3] [--no-build]

- build: kubelet + kube-proxy and the device plugin built again into a temporary cache
  (``CHUTE_OPERATOR_CACHE``), with the machine's warm Go caches (what a version bump costs; the very
  first build from empty Go caches is the control plane's, see controlplane_startup.py);
- cold image pull: the pause and project images pushed to the local registry and pulled by the node's
  containerd into an empty store (what the first start after a new image pays: the push is in the
  start, the pull in apply -> first answer), then the warm starts reuse the kept store's layers;
- per run: the control plane with the real node started from cached binaries and images (the
  node's own milestones), then ``kubectl apply`` of a Chute running the simulated model server on the
  real node until a first request through its ClusterIP is answered, then the memory (VmRSS) of
  every process: control plane, real node, operator, and the pod's containers (cgroup usage).

Requests go only to the Chute's ClusterIP (kept on this machine by the network guard), one at a time
until the first answer, at most 60 s. Results: benchmarks/results/realnode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chute_devcluster.binaries import KUBERNETES_VERSION, ensure_binaries
from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.processes import free_port
from chute_devcluster.realnode import NodeImages, build_node_images
from chute_devcluster.realnode_config import RealNodeSettings
from chute_operator.crd import crd_yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "realnode.json"
NAMESPACE = "default"
CHUTE = "bench"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def children_rss_mb(pid: int) -> float:
    """RSS of a process's descendants (containerd's shims live outside it, see pods_mb)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    total += rss_mb(int(proc.name)) + children_rss_mb(int(proc.name))
            except (OSError, IndexError, ValueError):
                continue
    return total


def pods_mb() -> float:
    """Memory the real node's pods use (their cgroup, page cache included)."""
    usage = Path("/sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes")
    return round(int(usage.read_text()) / 2**20, 1) if usage.exists() else 0.0


def shims_mb(socket_path: str) -> float:
    """RSS of the containerd shims of this node (they outlive the containerd that started them)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if socket_path in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    total += rss_mb(int(proc.name))
            except OSError:
                continue
    return round(total, 1)


def build_seconds() -> dict[str, float]:
    """Build the real node's binaries again into an empty temporary cache (Go caches warm)."""
    code = (
        "import time\n"
        "from chute_devcluster import binaries\n"
        "for name in ('build_kubernetes_node', 'build_device_plugin'):\n"
        "    started = time.monotonic(); getattr(binaries, name)()\n"
        "    print(name, round(time.monotonic() - started, 1))\n"
    )
    with tempfile.TemporaryDirectory(prefix="chute-bench-cache-") as cache:
        env = {**os.environ, "CHUTE_OPERATOR_CACHE": cache}
        output = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
    timings = dict(line.split() for line in output.splitlines() if line.startswith("build_"))
    return {
        "kubelet_and_kube_proxy": float(timings["build_kubernetes_node"]),
        "gpu_device_plugin": float(timings["build_device_plugin"]),
    }


def _operator(plane: ControlPlane, image: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "CHUTE_OPERATOR_SIDECAR_IMAGE": image,
        "CHUTE_OPERATOR_METRICS_PORT": str(free_port()),
        "CHUTE_OPERATOR_HEALTH_PORT": str(free_port()),
        "CHUTE_OPERATOR_LEASE_NAMESPACE": "default",
        "CHUTE_OPERATOR_LOG_FORMAT": "text",
    }
    log = (plane.log_dir / "operator.log").open("ab")
    command = [sys.executable, "-m", "chute_operator", "run", "--all-namespaces"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _chute(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": CHUTE, "namespace": NAMESPACE},
        "spec": {
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "template": "custom",
            "command": ["chute-operator", "modelsim"],
            "args": ["--model", "bench"],
            "nodeSelector": {"gpuCount": 1, "include": ["a10"]},
            "resources": {"cpu": "100m", "memory": "256Mi", "sharedMemory": "16Mi"},
            "cache": {"size": "16Mi"},
            "monitoring": {"serviceMonitor": False},
        },
    }


def _first_answer(plane: ControlPlane, deadline: float) -> None:
    """Poll for the Service, then send one chat request at a time until one is answered 200."""
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    url = ""
    while time.monotonic() < deadline:
        if not url:
            found = plane.kubectl("get", "service", CHUTE, "-n", NAMESPACE, "-o", "json", check=False)
            if found.returncode == 0:
                spec = json.loads(found.stdout)["spec"]
                url = f"http://{spec['clusterIP']}:{spec['ports'][0]['port']}/v1/chat/completions"
        if url:
            request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:  # URLError, timeouts and refused connections alike
                pass
        time.sleep(0.2)
    raise RuntimeError("no answer within the deadline")


def one_run(images: NodeImages, image_store: Path | None = None) -> dict[str, Any]:
    plane = ControlPlane(
        tools=ensure_binaries(),
        real_node=RealNodeSettings.from_env(),
        real_node_images=images,
        kwok_log_level="WARN",
        real_node_image_store=image_store,
        real_node_lock_timeout=1200,  # another cluster's real node (a test run) may hold the machine's
    )
    operator: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {}
    try:
        plane.start()
        assert plane.real_node is not None
        node = dict(plane.real_node.milestones)
        waited = node.get("machine lock", 0.0)  # another cluster's real node may have held the machine
        result["start_seconds"] = round(plane.startup_seconds - waited, 2)
        result["real_node_start_seconds"] = round(node["node Ready"] - waited, 2)
        result["real_node_milestones_seconds"] = node
        result["milestones_seconds"] = dict(plane.milestones)
        plane.kubectl("apply", "--server-side", "-f", "-", input=crd_yaml())
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        project_image = plane.project_image()
        operator = _operator(plane, project_image)
        applied = time.monotonic()
        plane.kubectl("apply", "-f", "-", input=json.dumps(_chute(project_image)))
        _first_answer(plane, applied + 60)
        result["apply_to_first_answer_seconds"] = round(time.monotonic() - applied, 2)
        rss = {name: rss_mb(pid) for name, pid in sorted(plane.pids().items())}
        rss["operator"] = rss_mb(operator.pid)
        rss["containerd-shims"] = shims_mb(str(plane.real_node.paths.containerd_socket))
        result["rss_mb"] = rss
        result["pods_cgroup_mb"] = pods_mb()
        result["total_mb"] = round(sum(rss.values()) + result["pods_cgroup_mb"], 1)
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        stopping = time.monotonic()
        plane.stop()
        result["stop_seconds"] = round(time.monotonic() - stopping, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-build", action="store_true", help="skip the build measurement")
    args = parser.parse_args()
    ensure_binaries()
    images = build_node_images()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python benchmarks/realnode.py --runs {args.runs}",
        "kubernetes": KUBERNETES_VERSION,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": float(Path("/proc/loadavg").read_text().split()[0]),
        "image_archives_mb": {
            image.ref: round(image.archive.stat().st_size / 2**20, 1)
            for image in (images.sandbox, *images.others)
        },
    }
    if not args.no_build:
        results["build_seconds"] = build_seconds()
        print(f"build (warm Go caches): {results['build_seconds']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="chute-bench-store-") as store:
        cold = one_run(images, Path(store))
    results["cold_image_pull"] = cold
    milestones = cold["milestones_seconds"]
    pushed = milestones["images pushed"] - milestones["registry ready"]
    print(
        f"empty store: images pushed in {pushed:.1f}s, apply -> first answer (with the pull) "
        f"{cold['apply_to_first_answer_seconds']:.1f}s",
        flush=True,
    )
    runs = []
    for number in range(1, args.runs + 1):
        run = one_run(images)
        runs.append(run)
        print(
            f"run {number}: cluster start {run['start_seconds']:.1f}s (real node Ready after "
            f"{run['real_node_start_seconds']:.1f}s of it), apply -> first answer "
            f"{run['apply_to_first_answer_seconds']:.1f}s, memory {run['total_mb']:.0f} MiB, "
            f"stop {run['stop_seconds']:.1f}s",
            flush=True,
        )
    results["runs"] = runs
    results["median"] = {
        "start_seconds": statistics.median(r["start_seconds"] for r in runs),
        "real_node_start_seconds": statistics.median(r["real_node_start_seconds"] for r in runs),
        "apply_to_first_answer_seconds": statistics.median(r["apply_to_first_answer_seconds"] for r in runs),
        "total_mb": statistics.median(r["total_mb"] for r in runs),
        "stop_seconds": statistics.median(r["stop_seconds"] for r in runs),
    }
    results["loadavg_1m_after"] = float(Path("/proc/loadavg").read_text().split()[0])
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"median: {results['median']}\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
