"""The GPU catalog and the Chutes eligibility rule (include, exclude, minimum VRAM)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from chute_operator.api import NodeSelector

PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource GPUs are requested by (the NVIDIA device plugin's)."""
"""Node label set by NVIDIA GPU Feature Discovery."""


@dataclass(frozen=True)
class GpuType:
    """One GPU type: its Chutes short name, memory, and node label values."""

    name: str
    vram_gb: int
    products: tuple[str, ...]


class CatalogError(ValueError):
    """A catalog file that cannot be used."""


class NoEligibleGpu(ValueError):
    """The node selector admits no GPU of the catalog; the message names the inputs."""


Catalog = dict[str, GpuType]


def _parse(document: object, source: str) -> Catalog:
    if not isinstance(document, dict) or not isinstance(document.get("gpus"), list):
        raise CatalogError(f"{source}: expected a mapping with a 'gpus' list")
    catalog: Catalog = {}
    for index, entry in enumerate(document["gpus"]):
        try:
            gpu = GpuType(
                name=str(entry["name"]),
                vram_gb=int(entry["vramGb"]),
                products=tuple(str(p) for p in entry["products"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CatalogError(
                f"{source}: gpus[{index}] needs name, vramGb and products ({error})"
            ) from error
        catalog[gpu.name] = gpu
    return catalog


def builtin_catalog() -> Catalog:
    """The catalog shipped with the operator."""
    text = resources.files("chute_operator").joinpath("data/gpus.yaml").read_text()
    return _parse(yaml.safe_load(text), "built-in catalog")


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The built-in catalog, with entries of ``path`` (if given) replacing or adding by name."""
    catalog = builtin_catalog()
    if path:
        try:
            document = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise CatalogError(f"cannot read GPU catalog {path}: {error}") from error
        catalog.update(_parse(document, str(path)))
    return catalog


def check_gpu_names(selector: NodeSelector, catalog: Catalog) -> None:
    """Raise :class:`NoEligibleGpu` when ``include`` or ``exclude`` names a GPU the catalog lacks."""
    for field, names in (("include", selector.include), ("exclude", selector.exclude)):
        unknown = sorted(set(names or ()) - catalog.keys())
        if unknown:
            raise NoEligibleGpu(
                f"spec.nodeSelector.{field}: unknown GPU {', '.join(unknown)} "
                f"(known: {', '.join(g.name for g in _sorted(catalog.values()))})"
            )


def why_not_eligible(gpu: GpuType, selector: NodeSelector) -> str | None:
    """Why ``selector`` refuses this GPU type (the first reason), or None when it is eligible."""
    if selector.include and gpu.name not in selector.include:
        return f"not in spec.nodeSelector.include [{', '.join(selector.include)}]"
    if gpu.name in (selector.exclude or ()):
        return "in spec.nodeSelector.exclude"
    if gpu.vram_gb < selector.min_vram_gb_per_gpu:
        return f"{gpu.vram_gb} GB < spec.nodeSelector.minVramGbPerGpu {selector.min_vram_gb_per_gpu} GB"
    return None


def eligible_gpus(selector: NodeSelector, catalog: Catalog) -> list[GpuType]:
    """GPU types a replica may run on: all (or ``include``), minus ``exclude``, with enough VRAM.

    Sorted by VRAM then name. An empty list for CPU-only Chutes (``gpuCount: 0``).
    Raises :class:`NoEligibleGpu` when a GPU is needed and none qualifies.
    """
    if selector.gpu_count == 0:
        return []
    check_gpu_names(selector, catalog)
    eligible = [g for g in catalog.values() if why_not_eligible(g, selector) is None]
    if not eligible:
        raise NoEligibleGpu(
            "spec.nodeSelector admits no GPU: "
            f"include={list(selector.include) if selector.include else 'all'}, "
            f"exclude={list(selector.exclude or [])}, minVramGbPerGpu={selector.min_vram_gb_per_gpu} "
            f"(largest in the catalog: {max(g.vram_gb for g in catalog.values())} GB)"
        )
    return _sorted(eligible)


def _sorted(gpus: Iterable[GpuType]) -> list[GpuType]:
    return sorted(gpus, key=lambda g: (g.vram_gb, g.name))
