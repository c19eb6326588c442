"""GPU discovery profiles: which node labels mean a GPU type on a platform, and its GPU taints.

A profile turns a Chute's eligible GPU types into node affinity terms and tolerations. Cloud profiles
use only labels that the platform's autoscaler knows before a node exists (GKE's accelerator label,
Karpenter's and EKS Auto Mode's well-known labels, the instance type), so a pending Chute can make a
node be created.
Pure: no I/O beyond reading a catalog file.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chute_operator.api.k8s_labels import key_problem
from chute_operator.gpu_tolerations import Toleration, parse_toleration
from chute_operator.gpus import (
    PRODUCT_LABEL,
    CatalogError,
    GpuType,
    Match,
    load_catalog,
    parse_matches,
    read_catalog_file,
)

AUTO = "auto"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"


def _tolerate(key: str, value: str | None = None) -> Toleration:
    if value is None:
        return {"key": key, "operator": "Exists", "effect": "NoSchedule"}
    return {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}


@dataclass(frozen=True)
class GpuProfile:
    """How GPU nodes of one platform are labelled and tainted."""

    name: str
    label: str
    """The label whose value names the GPU type (a catalog value without a key is this key's)."""
    tolerations: tuple[Toleration, ...] = ()
    """Tolerated beside each vendor's resource taint (``nvidia.com/gpu``, ``amd.com/gpu``)."""
    platform_label: str | None = None
    """A label every node of the platform carries, GPU or not: ``auto`` picks the profile by it when
    no GPU node exists yet (an autoscaler creates them on demand)."""
    platform_value: str | None = None
    """The value ``platform_label`` must have (None: any)."""
    values: Mapping[str, tuple[Match, ...]] = field(default_factory=dict)
    """Values by GPU name over the catalog's ``labels`` (the custom profile's)."""
    description: str = ""

    def on_platform(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with ``labels`` is of this profile's platform (True without a platform label)."""
        if self.platform_label is None:
            return True
        return self.platform_label in labels and self.platform_value in (None, labels[self.platform_label])

    def matches(self, gpu: GpuType, gpu_count: int = 0) -> tuple[Match, ...]:
        """The label sets meaning ``gpu`` on this platform (each with its keys filled in), leaving out a
        value whose nodes have fewer than ``gpu_count`` of it (an instance type's GPUs); () if none."""
        raw = self.values.get(gpu.name) or gpu.labels.get(self.name)
        if raw is None and self.name == GFD.name:
            raw = tuple(((PRODUCT_LABEL, product),) for product in gpu.products)
        per_node = {} if gpu.name in self.values else gpu.per_node.get(self.name, {})
        return tuple(
            tuple((key or self.label, value) for key, value in match)
            for match in raw or ()
            if per_node.get(match, gpu_count) >= gpu_count
        )

    def offers(self, gpu: GpuType, gpu_count: int = 0) -> bool:
        return bool(self.matches(gpu, gpu_count))

    def node_terms(self, gpus: Iterable[GpuType], gpu_count: int = 0) -> list[list[dict[str, Any]]]:
        """The matchExpressions of one nodeSelectorTerm per group of label sets that differ only in
        their first label (terms are alternatives; a term's expressions all hold); values whose nodes
        have fewer than ``gpu_count`` GPUs left out."""
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
        for gpu in gpus:
            for match in self.matches(gpu, gpu_count):
                (key, value), rest = match[0], tuple(sorted(match[1:]))
                values = groups.setdefault((key, rest), [])
                if value not in values:
                    values.append(value)
        return [
            [
                {"key": key, "operator": "In", "values": sorted(values)},
                *({"key": k, "operator": "In", "values": [v]} for k, v in rest),
            ]
            for (key, rest), values in sorted(groups.items())
        ]

    def node_match(
        self, labels: Mapping[str, str], catalog: Iterable[GpuType]
    ) -> tuple[GpuType, Match] | None:
        """The catalog GPU whose label set ``labels`` carry under this profile, and that label set."""
        return next(
            (
                (gpu, match)
                for gpu in catalog
                for match in self.matches(gpu)
                if all(labels.get(key) == value for key, value in match)
            ),
            None,
        )

    def node_gpu(self, labels: Mapping[str, str], catalog: Iterable[GpuType]) -> GpuType | None:
        """The catalog GPU whose label set ``labels`` carry under this profile, if any."""
        found = self.node_match(labels, catalog)
        return found[0] if found else None


GFD = GpuProfile(
    "gfd",
    PRODUCT_LABEL,
    platform_label=None,
    description="NVIDIA GPU Feature Discovery's nvidia.com/gpu.product (AMD: the node labeller's "
    "amd.com/gpu.device-id); set after a node boots, so no autoscaler can create a node for it",
)
GKE = GpuProfile(
    "gke",
    "cloud.google.com/gke-accelerator",
    platform_label="cloud.google.com/gke-nodepool",
    description="GKE's cloud.google.com/gke-accelerator; GPU nodes are tainted nvidia.com/gpu=present",
)
EKS = GpuProfile(
    "eks",
    "karpenter.k8s.aws/instance-gpu-name",
    platform_label="karpenter.sh/nodepool",
    description="Karpenter's well-known karpenter.k8s.aws/instance-gpu-name (and instance-gpu-memory "
    "where one name has two sizes)",
)
EKS_AUTO = GpuProfile(
    "eks-auto",
    "eks.amazonaws.com/instance-gpu-name",
    platform_label="eks.amazonaws.com/compute-type",
    platform_value="auto",
    description="EKS Auto Mode's well-known eks.amazonaws.com/instance-gpu-name (and instance-gpu-memory "
    "where one name has two sizes); its nodes also carry karpenter.sh/nodepool, never karpenter.k8s.aws/",
)
EKS_NODEGROUP = GpuProfile(
    "eks-nodegroup",
    INSTANCE_TYPE,
    platform_label="eks.amazonaws.com/nodegroup",
    description="EKS managed node groups (GPU AMI): no GPU label, the EC2 instance type names the GPU",
)
AKS = GpuProfile(
    "aks",
    INSTANCE_TYPE,
    tolerations=(_tolerate("sku", "gpu"),),
    platform_label="kubernetes.azure.com/cluster",
    description="AKS node pools: the Azure VM size names the GPU; GPU pools are commonly tainted sku=gpu",
)
BUILTIN: dict[str, GpuProfile] = {p.name: p for p in (GFD, GKE, EKS, EKS_AUTO, EKS_NODEGROUP, AKS)}
CUSTOM = "custom"


def custom_profile(
    document: Mapping[str, Any], source: str, known: Collection[str] | None = None
) -> GpuProfile | None:
    """The ``profiles.custom`` section of a catalog file: ``label``, ``tolerations``, ``gpus`` (GPU
    name, one of ``known`` if given, to its label values); None when the file has none."""
    raw = (document.get("profiles") or {}).get(CUSTOM)
    if not raw:
        return None
    where = f"{source}: profiles.custom"
    if not isinstance(raw, dict) or not raw.get("label"):
        raise CatalogError(f"{where} needs label (the node label key whose value names the GPU)")
    problem = key_problem(str(raw["label"]))
    if problem:
        raise CatalogError(f"{where}.label: {problem}")
    gpus = raw.get("gpus") or {}
    if not isinstance(gpus, dict):
        raise CatalogError(f"{where}.gpus: expected a mapping of GPU name to label values")
    unknown = sorted(str(name) for name in gpus if known is not None and str(name) not in known)
    if unknown:
        raise CatalogError(
            f"{where}.gpus: unknown GPU {', '.join(unknown)} (known: {', '.join(sorted(known or ()))}; "
            "add it to the catalog's gpus)"
        )
    values = {
        str(name): parse_matches(v if isinstance(v, list) else [v], f"{where}.gpus.{name}")
        for name, v in gpus.items()
    }
    tolerations = tuple(
        parse_toleration(t, f"{where}.tolerations[{i}]") for i, t in enumerate(raw.get("tolerations") or [])
    )
    return GpuProfile(
        CUSTOM,
        str(raw["label"]),
        tolerations=tolerations,
        platform_label=None,
        values=values,
        description=f"the platform's own {raw['label']}",
    )


def load_profiles(path: str | Path | None = None) -> dict[str, GpuProfile]:
    """The built-in profiles, and the custom one of the catalog file at ``path`` if it has one."""
    profiles = dict(BUILTIN)
    if path:
        custom = custom_profile(read_catalog_file(path), str(path), load_catalog(path).keys())
        if custom is not None:
            profiles[CUSTOM] = custom
    return profiles


def profile_named(name: str, profiles: Mapping[str, GpuProfile]) -> GpuProfile:
    """The profile called ``name``; ValueError listing the known ones otherwise."""
    if name not in profiles:
        known = ", ".join([*profiles, *([] if CUSTOM in profiles else [f"{CUSTOM} (needs profiles.custom)"])])
        raise ValueError(f"unknown GPU profile {name!r} (known: {known}, or {AUTO} with a cluster)")
    return profiles[name]
