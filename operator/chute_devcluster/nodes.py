"""The simulated nodes: pools of identical machines, GPU ones labelled like NVIDIA's tools label them.

A pool file (YAML) replaces the default set::

    pools:
      - name: h100
        count: 2
        instanceType: p5.48xlarge
        cpu: "192"
        memory: 2048Gi
        ephemeralStorage: 3500Gi
        gpu: {product: NVIDIA-H100-80GB-HBM3, memoryMiB: 81559, count: 8, family: hopper}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
MANAGED_NODES_SELECTOR = f"{KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}"
"""The annotation selector kwok is started with: it manages only nodes carrying it."""
SIMULATED_LABEL = "chutes.ai/simulated"
"""Label (value ``"true"``) on every simulated node: its pods' IPs belong to nobody, so code that dials
pods (metrics, the activator) skips pods on nodes carrying it."""

_BINARY_SUFFIXES = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


class NodePoolError(ValueError):
    """A node pool file or entry that cannot be used."""


def _mebibytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", quantity)
    if not match:
        raise NodePoolError(f"memory quantity {quantity!r}: expected a whole number with Ki, Mi, Gi or Ti")
    return int(int(match.group(1)) * _BINARY_SUFFIXES[match.group(2)])


def _millicores(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(m?)", quantity)
    if not match:
        raise NodePoolError(f'cpu quantity {quantity!r}: expected cores ("16") or millicores ("500m")')
    value = int(match.group(1))
    return value if match.group(2) else value * 1000


@dataclass(frozen=True)
class GpuSpec:
    """The GPUs of one node: NVIDIA GPU Feature Discovery's product name, memory per GPU, count."""

    product: str
    memory_mib: int
    count: int
    family: str | None = None


@dataclass(frozen=True)
class NodePool:
    """``count`` identical nodes named ``sim-<name>-<index>``."""

    name: str
    count: int
    instance_type: str
    cpu: str
    memory: str
    ephemeral_storage: str = "200Gi"
    pods: int = 110
    gpu: GpuSpec | None = None
    reserved_cpu: str = "500m"
    reserved_memory: str = "2Gi"
    labels: Mapping[str, str] = field(default_factory=dict)
    feature_discovery: bool = True
    """GPU Feature Discovery's nvidia.com/gpu.* labels on its GPU nodes (a cloud pool without GFD: no)."""
    taints: tuple[Mapping[str, str], ...] | None = None
    """None: the GPU taint on GPU nodes (as GKE and most GPU pools taint them)."""

    def node_names(self) -> list[str]:
        return [f"sim-{self.name}-{index}" for index in range(self.count)]

    def capacity(self) -> dict[str, str]:
        resources = {
            "cpu": self.cpu,
            "memory": self.memory,
            "ephemeral-storage": self.ephemeral_storage,
            "pods": str(self.pods),
        }
        if self.gpu:
            resources[GPU_RESOURCE] = str(self.gpu.count)
        return resources

    def allocatable(self) -> dict[str, str]:
        """Capacity less what a kubelet would reserve for the system."""
        cpu = _millicores(self.cpu) - _millicores(self.reserved_cpu)
        memory = _mebibytes(self.memory) - _mebibytes(self.reserved_memory)
        if cpu <= 0 or memory <= 0:
            raise NodePoolError(f"pool {self.name}: the reservation exceeds the capacity")
        return {**self.capacity(), "cpu": f"{cpu}m", "memory": f"{memory}Mi"}

    def node_labels(self, node_name: str) -> dict[str, str]:
        labels = {
            "type": "kwok",
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": self.instance_type,
            "chutes.ai/sim-pool": self.name,
            SIMULATED_LABEL: "true",
        }
        if self.gpu and self.feature_discovery:
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.gpu.product,
                "nvidia.com/gpu.memory": str(self.gpu.memory_mib),
                "nvidia.com/gpu.count": str(self.gpu.count),
            }
            if self.gpu.family:
                labels["nvidia.com/gpu.family"] = self.gpu.family
        return labels | dict(self.labels)


def node_manifest(pool: NodePool, node_name: str) -> dict[str, Any]:
    """The Node object to create; kwok then fills in its conditions and keeps it alive."""
    spec: dict[str, Any] = {}
    taints = pool.taints if pool.taints is not None else ((GPU_TAINT,) if pool.gpu else ())
    if taints:
        spec["taints"] = [dict(taint) for taint in taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": pool.node_labels(node_name),
            "annotations": {
                KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": spec,
        "status": {"capacity": pool.capacity(), "allocatable": pool.allocatable()},
    }


def node_manifests(pools: Iterable[NodePool]) -> list[dict[str, Any]]:
    return [node_manifest(pool, name) for pool in pools for name in pool.node_names()]


def cloud_node_pools() -> tuple[NodePool, ...]:
    """One GPU node each as GKE, EKS with Karpenter and AKS label and taint them, without GPU Feature
    Discovery's labels: Chutes land there only with that platform's GPU profile (docs/gpu-profiles.md)."""
    return (
        NodePool(
            "gke-l4", 1, "g2-standard-48", "48", "192Gi", "900Gi",
            gpu=GpuSpec("NVIDIA-L4", 23034, 4), feature_discovery=False,
            labels={"cloud.google.com/gke-nodepool": "l4-pool",
                    "cloud.google.com/gke-accelerator": "nvidia-l4",
                    "cloud.google.com/gke-accelerator-count": "4"},
        ),
        NodePool(
            "eks-h100", 1, "p5.48xlarge", "192", "2048Gi", "3500Gi",
            gpu=GpuSpec("NVIDIA-H100-80GB-HBM3", 81559, 8), feature_discovery=False,
            labels={"karpenter.sh/nodepool": "gpu", "karpenter.k8s.aws/instance-gpu-name": "h100",
                    "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia",
                    "karpenter.k8s.aws/instance-gpu-memory": "81920",
                    "karpenter.k8s.aws/instance-gpu-count": "8"},
        ),
        NodePool(
            "aks-a100", 1, "Standard_NC96ads_A100_v4", "96", "880Gi", "900Gi",
            gpu=GpuSpec("NVIDIA-A100-80GB-PCIe", 81920, 4), feature_discovery=False,
            labels={"kubernetes.azure.com/cluster": "MC_chutes_local",
                    "kubernetes.azure.com/agentpool": "gpu",
                    "kubernetes.azure.com/accelerator": "nvidia"},
            taints=({"key": "sku", "value": "gpu", "effect": "NoSchedule"},),
        ),
    )  # fmt: skip


def default_node_pools() -> tuple[NodePool, ...]:
    """Two nodes each of H100, A100 (8 GPUs) and L40S, L4 (4 GPUs) labelled by GPU Feature Discovery,
    one CPU-only node, and one GPU node each of GKE, EKS (Karpenter) and AKS (:func:`cloud_node_pools`)."""
    return (
        NodePool(
            "h100", 2, "p5.48xlarge", "192", "2048Gi", "3500Gi",
            gpu=GpuSpec("NVIDIA-H100-80GB-HBM3", 81559, 8, "hopper"),
        ),
        NodePool(
            "a100", 2, "p4de.24xlarge", "96", "1152Gi", "3500Gi",
            gpu=GpuSpec("NVIDIA-A100-SXM4-80GB", 81920, 8, "ampere"),
        ),
        NodePool(
            "l40s", 2, "g6e.12xlarge", "48", "384Gi", "1800Gi",
            gpu=GpuSpec("NVIDIA-L40S", 46068, 4, "ada-lovelace"),
        ),
        NodePool(
            "l4", 2, "g6.12xlarge", "48", "192Gi", "900Gi",
            gpu=GpuSpec("NVIDIA-L4", 23034, 4, "ada-lovelace"),
        ),
        NodePool("cpu", 1, "m7i.4xlarge", "16", "64Gi", "200Gi"),
        *cloud_node_pools(),
    )  # fmt: skip


def _pool_from_mapping(entry: Mapping[str, Any], where: str) -> NodePool:
    known = {"name", "count", "instanceType", "cpu", "memory", "ephemeralStorage", "pods", "gpu",
             "reservedCpu", "reservedMemory", "labels"}  # fmt: skip
    unknown = set(entry) - known
    if unknown:
        raise NodePoolError(f"{where}: unknown keys {sorted(unknown)}")
    gpu = entry.get("gpu")
    try:
        pool = NodePool(
            name=str(entry["name"]),
            count=int(entry["count"]),
            instance_type=str(entry["instanceType"]),
            cpu=str(entry["cpu"]),
            memory=str(entry["memory"]),
            ephemeral_storage=str(entry.get("ephemeralStorage", "200Gi")),
            pods=int(entry.get("pods", 110)),
            gpu=GpuSpec(
                product=str(gpu["product"]),
                memory_mib=int(gpu["memoryMiB"]),
                count=int(gpu["count"]),
                family=str(gpu["family"]) if gpu.get("family") else None,
            )
            if gpu
            else None,
            reserved_cpu=str(entry.get("reservedCpu", "500m")),
            reserved_memory=str(entry.get("reservedMemory", "2Gi")),
            labels={str(k): str(v) for k, v in (entry.get("labels") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise NodePoolError(f"{where}: needs name, count, instanceType, cpu and memory ({error})") from error
    pool.allocatable()  # validates the quantities
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", pool.name) or pool.count < 0:
        raise NodePoolError(f"{where}: name must be a DNS label and count >= 0")
    return pool


def load_node_pools(path: Path) -> tuple[NodePool, ...]:
    """Read a pool file (see the module docstring for its format)."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("pools"), list):
        raise NodePoolError(f"{path}: expected a mapping with a 'pools' list")
    entries = document["pools"]
    pools = tuple(_pool_from_mapping(entry, f"{path}: pools[{i}]") for i, entry in enumerate(entries))
    names = [name for pool in pools for name in pool.node_names()]
    if len(names) != len(set(names)):
        raise NodePoolError(f"{path}: pool names repeat")
    return pools
