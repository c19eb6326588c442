"""The GPU catalog and the Chutes eligibility rule (include, exclude, minimum VRAM, vendor)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import yaml

from chute_operator.api import NodeSelector
from chute_operator.api.k8s_labels import key_problem, value_problem

PRODUCT_LABEL = "nvidia.com/gpu.product"
"""Node label set by NVIDIA GPU Feature Discovery."""
GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource NVIDIA GPUs are requested by (the NVIDIA device plugin's)."""
GPU_RESOURCES = {"nvidia": GPU_RESOURCE, "amd": "amd.com/gpu"}
"""The extended resource of each vendor's device plugin."""

Match = tuple[tuple[str, str], ...]
"""Node labels that together mean one GPU type: ``((key, value), ...)``; key ``""`` stands for the
profile's own label key (gpu_profiles.py)."""


@dataclass(frozen=True)
class GpuType:
    """One GPU type: its Chutes short name, memory, vendor, and node label values per profile."""

    name: str
    vram_gb: int
    products: tuple[str, ...]
    """``nvidia.com/gpu.product`` values (GPU Feature Discovery)."""
    vendor: str = "nvidia"
    labels: Mapping[str, tuple[Match, ...]] = field(default_factory=dict)
    """Each profile's label values for this GPU (gpu_profiles.py), as read from the catalog."""
    per_node: Mapping[str, Mapping[Match, int]] = field(default_factory=dict)
    """GPUs per node of each profile's values where the catalog says (an instance type's GPUs)."""

    @property
    def resource(self) -> str:
        return GPU_RESOURCES[self.vendor]


def has_gpus(allocatable: Mapping[str, Any] | None) -> bool:
    """Whether a node's ``status.allocatable`` offers any vendor's GPUs."""
    return any((allocatable or {}).get(r) not in (None, "0", 0) for r in GPU_RESOURCES.values())


class CatalogError(ValueError):
    """A catalog file that cannot be used."""


class NoEligibleGpu(ValueError):
    """The node selector admits no GPU of the catalog; the message names the inputs."""


class Offering(Protocol):
    """What a GPU profile tells eligibility: whether its nodes can carry a GPU type (that many of it)."""

    @property
    def name(self) -> str: ...

    def offers(self, gpu: GpuType, gpu_count: int = 0) -> bool: ...


Catalog = dict[str, GpuType]


def _checked(key: str, value: str, where: str) -> tuple[str, str]:
    problem = (key_problem(key) if key else None) or value_problem(value)
    if problem:
        raise CatalogError(f"{where}: {problem}")
    return key, value


def parse_matches(raw: object, where: str) -> tuple[Match, ...]:
    """A profile's values for one GPU: each a string (the profile's key) or a mapping of labels, each
    key and value valid as a Kubernetes label's."""
    if not isinstance(raw, list):
        raise CatalogError(f"{where}: expected a list of label values")
    matches: list[Match] = []
    for item in raw:
        if isinstance(item, dict) and item:
            matches.append(tuple(_checked(str(key), str(value), where) for key, value in item.items()))
        elif isinstance(item, (str, int)) and not isinstance(item, bool):
            matches.append((_checked("", str(item), where),))
        else:
            raise CatalogError(f"{where}: {item!r} is neither a label value nor a mapping of labels")
    return tuple(matches)


def parse_values(raw: object, where: str) -> tuple[tuple[Match, ...], dict[Match, int]]:
    """A profile's values for one GPU and the GPUs per node of each where given: a list (as
    :func:`parse_matches`) or a mapping of value to its GPUs per node (an instance type's)."""
    if not isinstance(raw, dict):
        return parse_matches(raw, where), {}
    matches = parse_matches(list(raw), where)
    counts: dict[Match, int] = {}
    for match, count in zip(matches, raw.values(), strict=True):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise CatalogError(f"{where}: {match[0][1]}: GPUs per node must be a positive integer")
        counts[match] = count
    return matches, counts


def _gpu(entry: Any, where: str) -> GpuType:
    try:
        vendor = str(entry.get("vendor", "nvidia"))
        parsed = {
            str(profile): parse_values(values, f"{where}.labels.{profile}")
            for profile, values in (entry.get("labels") or {}).items()
        }
        labels = {profile: matches for profile, (matches, _) in parsed.items()}
        gpu = GpuType(
            name=str(entry["name"]),
            vram_gb=int(entry["vramGb"]),
            products=tuple(str(p) for p in entry.get("products") or ()),
            vendor=vendor,
            labels=labels,
            per_node={profile: counts for profile, (_, counts) in parsed.items() if counts},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CatalogError(f"{where} needs name and vramGb ({error})") from error
    if vendor not in GPU_RESOURCES:
        raise CatalogError(f"{where}: vendor {vendor!r} is not one of {', '.join(GPU_RESOURCES)}")
    if not gpu.products and "gfd" not in labels:
        raise CatalogError(f"{where} needs products (nvidia.com/gpu.product values) or labels.gfd")
    return gpu


def _parse(document: object, source: str, base: Catalog | None = None) -> Catalog:
    """The entries of a catalog document; one replacing a ``base`` GPU without ``labels`` keeps its."""
    if not isinstance(document, dict) or not isinstance(document.get("gpus", []), list):
        raise CatalogError(f"{source}: expected a mapping with a 'gpus' list")
    catalog: Catalog = {}
    for index, entry in enumerate(document.get("gpus") or []):
        gpu = _gpu(entry, f"{source}: gpus[{index}]")
        kept = (base or {}).get(gpu.name)
        if kept is not None and "labels" not in entry:
            gpu = replace(gpu, labels=kept.labels, per_node=kept.per_node)
        catalog[gpu.name] = gpu
    return catalog


def read_catalog_file(path: str | Path) -> dict[str, Any]:
    """The YAML document of a catalog file (``gpus`` and ``profiles``); CatalogError if unreadable."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CatalogError(f"cannot read GPU catalog {path}: {error}") from error
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: expected a mapping with a 'gpus' list")
    return document


def builtin_catalog() -> Catalog:
    """The catalog shipped with the operator."""
    text = resources.files("chute_operator").joinpath("data/gpus.yaml").read_text()
    return _parse(yaml.safe_load(text), "built-in catalog")


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The built-in catalog, with entries of ``path`` (if given) replacing or adding by name (a
    replacement without ``labels`` keeps the built-in GPU's)."""
    catalog = builtin_catalog()
    if path:
        catalog.update(_parse(read_catalog_file(path), str(path), catalog))
    return catalog


def check_gpu_names(selector: NodeSelector, catalog: Catalog) -> None:
    """Raise :class:`NoEligibleGpu` when ``include`` or ``exclude`` names a GPU the catalog lacks, or
    ``include`` names GPUs of two vendors (one pod requests one vendor's resource)."""
    for field_name, names in (("include", selector.include), ("exclude", selector.exclude)):
        unknown = sorted(set(names or ()) - catalog.keys())
        if unknown:
            raise NoEligibleGpu(
                f"spec.nodeSelector.{field_name}: unknown GPU {', '.join(unknown)} "
                f"(known: {', '.join(g.name for g in _sorted(catalog.values()))})"
            )
    vendors = sorted({catalog[name].vendor for name in selector.include or ()})
    if len(vendors) > 1:
        raise NoEligibleGpu(
            f"spec.nodeSelector.include names GPUs of {' and '.join(vendors)}: a replica requests one "
            "vendor's GPUs (and its image is built for one of them); name one vendor's GPUs only"
        )


def why_not_eligible(gpu: GpuType, selector: NodeSelector, profile: Offering | None = None) -> str | None:
    """Why ``selector`` (or ``profile``) refuses this GPU type (the first reason), or None when eligible.

    A GPU not made by NVIDIA is eligible only when ``include`` names it: model images are built for
    CUDA or for ROCm, never both, so a Chute never lands on another vendor's GPU by chance.
    """
    if selector.include and gpu.name not in selector.include:
        return f"not in spec.nodeSelector.include [{', '.join(selector.include)}]"
    if gpu.name in (selector.exclude or ()):
        return "in spec.nodeSelector.exclude"
    if gpu.vendor != "nvidia" and not selector.include:
        return f"{gpu.vendor.upper()} GPU: eligible only when spec.nodeSelector.include names it"
    if gpu.vram_gb < selector.min_vram_gb_per_gpu:
        return f"{gpu.vram_gb} GB < spec.nodeSelector.minVramGbPerGpu {selector.min_vram_gb_per_gpu} GB"
    if profile is not None and not profile.offers(gpu):
        return f"no node label for it in GPU profile {profile.name}"
    if profile is not None and not profile.offers(gpu, selector.gpu_count):
        count = selector.gpu_count
        return f"no node of GPU profile {profile.name} has {count} of it (spec.nodeSelector.gpuCount)"
    return None


def eligible_gpus(selector: NodeSelector, catalog: Catalog, profile: Offering | None = None) -> list[GpuType]:
    """GPU types a replica may run on: all (or ``include``), minus ``exclude``, with enough VRAM, of
    one vendor, that ``profile`` (if given) can place.

    Sorted by VRAM then name. An empty list for CPU-only Chutes (``gpuCount: 0``).
    Raises :class:`NoEligibleGpu` when a GPU is needed and none qualifies.
    """
    if selector.gpu_count == 0:
        return []
    check_gpu_names(selector, catalog)
    eligible = [g for g in catalog.values() if why_not_eligible(g, selector, profile) is None]
    if not eligible:
        where = f" in GPU profile {profile.name}" if profile is not None else ""
        raise NoEligibleGpu(
            f"spec.nodeSelector admits no GPU{where}: "
            f"include={list(selector.include) if selector.include else 'all'}, "
            f"exclude={list(selector.exclude or [])}, minVramGbPerGpu={selector.min_vram_gb_per_gpu} "
            f"(largest in the catalog: {max(g.vram_gb for g in catalog.values())} GB)"
        )
    return _sorted(eligible)


def _sorted(gpus: Iterable[GpuType]) -> list[GpuType]:
    return sorted(gpus, key=lambda g: (g.vram_gb, g.name))
