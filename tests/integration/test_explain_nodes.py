"""``chute-operator explain --kubeconfig``: which simulated nodes could take a replica now, and why not.

The test adds two simulated nodes of its own, with a taint only its Chute tolerates, so other tests'
pods never land there and the GPU arithmetic is exact.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.kube_helpers import eventually

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.nodes import GpuSpec, NodePool, node_manifest

pytestmark = pytest.mark.integration
TAINT = {"key": "chutes.ai/explain-test", "value": "only", "effect": "NoSchedule"}
TOLERATIONS = [{"operator": "Exists"}]


@pytest.fixture
def own_nodes(control_plane: ControlPlane) -> Iterator[dict[str, str]]:
    """A B200 node (8 GPUs) and an L4 node (4 GPUs), tainted; deleted afterwards."""
    suffix = secrets.token_hex(3)
    pools = {
        "b200": NodePool(f"x{suffix}-b200", 1, "test", "64", "512Gi", gpu=GpuSpec("NVIDIA-B200", 183359, 8)),
        "l4": NodePool(f"x{suffix}-l4", 1, "test", "48", "192Gi", gpu=GpuSpec("NVIDIA-L4", 23034, 4)),
    }
    names = {key: pool.node_names()[0] for key, pool in pools.items()}
    for key, pool in pools.items():
        manifest = node_manifest(pool, names[key])
        manifest["spec"]["taints"].append(dict(TAINT))
        control_plane.api.create("/api/v1/nodes", manifest)
    try:
        for name in names.values():
            control_plane.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s")
        yield names
    finally:
        control_plane.kubectl("delete", "node", *names.values(), "--wait=false", check=False)


def gpu_pod(name: str, node: str, gpus: int) -> dict[str, Any]:
    container = {"name": "c", "image": "busybox:1.36", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": TOLERATIONS, "containers": [container]},
    }


def chute_file(tmp_path: Path, **node_selector: Any) -> Path:
    chute = {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": "explained"},
        "spec": {
            "image": "vllm/vllm-openai:v0.10.1",
            "template": "vllm",
            "model": {"name": "org/model"},
            "nodeSelector": node_selector,
            "pod": {"tolerations": [{"key": TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}]},
        },
    }
    path = tmp_path / "chute.yaml"
    path.write_text(yaml.safe_dump(chute))
    return path


def explain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chute_operator", "explain", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def node_block(output: str, node: str) -> str:
    """The node's line and its reasons in the report."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[1:2] == [node])
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("       - ")), len(lines))
    return "\n".join(lines[start:end])


def test_nodes_that_could_take_a_replica_and_why_the_others_cannot(
    control_plane: ControlPlane, namespace: str, own_nodes: dict[str, str], tmp_path: Path
) -> None:
    b200, l4 = own_nodes["b200"], own_nodes["l4"]
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(gpu_pod("busy", b200, 6)))
    eventually(
        lambda: (
            control_plane.kubectl(
                "get", "pod", "busy", "-n", namespace, "-o", "jsonpath={.status.phase}"
            ).stdout
            == "Running"
        ),
        "the pod holding 6 GPUs",
    )

    result = explain(
        "-f",
        str(chute_file(tmp_path, gpuCount=4, minVramGbPerGpu=24)),
        "--kubeconfig",
        str(control_plane.kubeconfig),
    )
    assert result.returncode == 0, result.stderr
    assert f"Nodes of {control_plane.server}:" in result.stdout
    busy = node_block(result.stdout, b200)
    assert busy.split()[:3] == ["no", b200, "NVIDIA-B200"]
    assert busy.splitlines()[1:] == ["       - nvidia.com/gpu: needs 4, 2 free of 8 allocatable"]
    assert node_block(result.stdout, l4).split()[:3] == ["yes", l4, "NVIDIA-L4"]
    cpu = node_block(result.stdout, "sim-cpu-0")
    assert "CPU-only: no nvidia.com/gpu.product label (GPU profile gfd)" in cpu
    assert "CPU-only: no nvidia.com/gpu allocatable" in cpu
    h100 = node_block(result.stdout, "sim-h100-0")
    assert "taint" not in h100  # the Chute tolerates the GPU taint

    stricter = explain(
        "-f", str(chute_file(tmp_path, gpuCount=1, minVramGbPerGpu=48)), "--cluster",
        env={"KUBECONFIG": str(control_plane.kubeconfig)},
    )  # fmt: skip
    assert stricter.returncode == 0, stricter.stderr
    assert (
        "GPU l4 (nvidia.com/gpu.product=NVIDIA-L4) not eligible: "
        "24 GB < spec.nodeSelector.minVramGbPerGpu 48 GB" in node_block(stricter.stdout, l4)
    )
    assert node_block(stricter.stdout, b200).split()[0] == "yes"


def test_a_kubeconfig_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    result = explain(
        "-f", str(chute_file(tmp_path, gpuCount=1)), "--kubeconfig", str(tmp_path / "missing-kubeconfig")
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot list the cluster's nodes and pods:")
    assert "Traceback" not in result.stderr
