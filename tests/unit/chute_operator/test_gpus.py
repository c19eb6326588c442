"""The GPU catalog and the eligibility rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from chute_operator.api import NodeSelector
from chute_operator.gpus import CatalogError, NoEligibleGpu, builtin_catalog, eligible_gpus, load_catalog

VRAM = {
    16: "a4000",
    20: "a4000_ada",
    24: "3090 4090 a5000 l4 a10",
    32: "5090",
    40: "a100_40gb a100_40gb_sxm",
    48: "a6000 a6000_ada a40 l40 l40s",
    80: "a100 a100_sxm h100 h100_sxm h800",
    96: "pro_6000 h100_nvl h20",
    140: "h200",
    192: "b200 mi300x",
}


def _names(**selector: object) -> list[str]:
    return [gpu.name for gpu in eligible_gpus(NodeSelector.model_validate(selector), builtin_catalog())]


def test_catalog_has_every_chutes_gpu_with_its_vram() -> None:
    catalog = builtin_catalog()
    expected = {name: vram for vram, names in VRAM.items() for name in names.split()}
    assert {name: gpu.vram_gb for name, gpu in catalog.items()} == expected
    assert all(gpu.products for gpu in catalog.values() if gpu.vendor == "nvidia")


def test_minimum_vram_filters_and_sorts_by_vram() -> None:
    assert _names(minVramGbPerGpu=140) == ["h200", "b200"]
    assert _names(minVramGbPerGpu=16)[0] == "a4000"


def test_include_then_exclude() -> None:
    assert _names(include=["l4", "h100", "a4000"], minVramGbPerGpu=24) == ["l4", "h100"]
    assert _names(exclude=["h100", "h100_sxm"], minVramGbPerGpu=80) == [
        "a100",
        "a100_sxm",
        "h800",
        "h100_nvl",
        "h20",
        "pro_6000",
        "h200",
        "b200",
    ]


def test_cpu_only_has_no_gpus() -> None:
    assert _names(gpuCount=0) == []


def test_nothing_eligible_names_the_inputs() -> None:
    with pytest.raises(NoEligibleGpu, match=r"include=\['l4'\].*minVramGbPerGpu=80"):
        _names(include=["l4"], minVramGbPerGpu=80)


def test_unknown_gpu_is_named() -> None:
    with pytest.raises(NoEligibleGpu, match=r"spec\.nodeSelector\.exclude: unknown GPU h1000"):
        _names(exclude=["h1000"])


def test_catalog_file_overrides_and_extends(tmp_path: Path) -> None:
    override = tmp_path / "gpus.yaml"
    override.write_text(
        "gpus:\n"
        "  - {name: l4, vramGb: 24, products: [Custom-L4]}\n"
        "  - {name: x1, vramGb: 300, products: [X-1]}\n"
    )
    catalog = load_catalog(override)
    assert catalog["l4"].products == ("Custom-L4",)
    assert catalog["x1"].vram_gb == 300
    assert "h100" in catalog


def test_bad_catalog_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "gpus.yaml"
    bad.write_text("gpus: [{name: l4}]\n")
    with pytest.raises(CatalogError, match=r"gpus\[0\]"):
        load_catalog(bad)


def test_an_amd_gpu_is_eligible_only_by_name() -> None:
    assert "mi300x" not in _names(minVramGbPerGpu=16)
    assert _names(include=["mi300x"]) == ["mi300x"]
    assert builtin_catalog()["mi300x"].resource == "amd.com/gpu"


def test_include_may_not_mix_vendors() -> None:
    with pytest.raises(NoEligibleGpu, match="names GPUs of amd and nvidia"):
        _names(include=["b200", "mi300x"])


def test_a_catalog_entry_may_carry_profile_labels_and_a_vendor(tmp_path: Path) -> None:
    override = tmp_path / "gpus.yaml"
    override.write_text(
        "gpus:\n"
        "  - {name: mi325x, vramGb: 256, vendor: amd, labels: {gfd: [{amd.com/gpu.device-id: 74a5}]}}\n"
        "  - {name: l4, vramGb: 24, products: [NVIDIA-L4], labels: {gke: [nvidia-l4, my-l4]}}\n"
    )
    catalog = load_catalog(override)
    assert catalog["mi325x"].labels["gfd"] == ((("amd.com/gpu.device-id", "74a5"),),)
    assert catalog["l4"].labels["gke"] == ((("", "nvidia-l4"),), (("", "my-l4"),))


def test_an_unknown_vendor_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "gpus.yaml"
    bad.write_text("gpus: [{name: g1, vramGb: 8, vendor: intel, products: [X]}]\n")
    with pytest.raises(CatalogError, match="vendor 'intel'"):
        load_catalog(bad)
