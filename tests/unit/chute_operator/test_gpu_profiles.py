"""GPU profiles: each platform's node affinity and tolerations, the custom profile, the auto pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chute_operator.gpu_profile_pick import pick_profile
from chute_operator.gpu_profiles import AKS, BUILTIN, EKS, EKS_NODEGROUP, GFD, GKE, GpuProfile, load_profiles
from chute_operator.gpus import CatalogError, NoEligibleGpu, builtin_catalog
from chute_operator.render import render
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions
from tests.invalid_chutes import chute_with

CATALOG = builtin_catalog()
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
AFFINITY = ("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")


def _pod(profile: GpuProfile, **selector: Any) -> dict[str, Any]:
    document = chute_with(nodeSelector={"gpuCount": 1, **selector})
    manifests = render(parse_chute(document), RenderOptions(catalog=CATALOG, gpu_profile=profile))
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _terms(pod: dict[str, Any]) -> list[list[dict[str, Any]]]:
    found: Any = pod
    for key in AFFINITY:
        found = found[key]
    return [term["matchExpressions"] for term in found]


def _in(key: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


H100_UP = {"minVramGbPerGpu": 80, "exclude": ["h800", "h100_nvl", "h20"]}


def test_gfd_is_todays_affinity_and_toleration() -> None:
    pod = _pod(GFD, include=["h100_sxm", "a100_sxm"])
    assert _terms(pod) == [[_in("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3")]]
    assert pod["tolerations"] == [GPU_TOLERATION]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_gke_asks_for_the_accelerator_label_and_tolerates_its_taint() -> None:
    pod = _pod(GKE, **H100_UP)
    assert _terms(pod) == [
        [
            _in(
                "cloud.google.com/gke-accelerator",
                "nvidia-a100-80gb",
                "nvidia-b200",
                "nvidia-h100-80gb",
                "nvidia-h100-mega-80gb",
                "nvidia-h200-141gb",
                "nvidia-rtx-pro-6000",
            )
        ]
    ]
    # GKE taints GPU nodes nvidia.com/gpu=present:NoSchedule
    assert pod["tolerations"] == [GPU_TOLERATION]


def test_eks_karpenter_tells_the_two_a100_sizes_apart_by_gpu_memory() -> None:
    pod = _pod(EKS, include=["a100_40gb_sxm", "a100_sxm", "h100_sxm", "l40s"])
    name, memory = "karpenter.k8s.aws/instance-gpu-name", "karpenter.k8s.aws/instance-gpu-memory"
    assert _terms(pod) == [
        [_in(name, "h100", "l40s")],
        [_in(name, "a100"), _in(memory, "40960")],
        [_in(name, "a100"), _in(memory, "81920")],
    ]
    assert pod["tolerations"] == [GPU_TOLERATION]


def test_eks_node_groups_name_the_instance_types() -> None:
    pod = _pod(EKS_NODEGROUP, include=["h100_sxm", "a100_sxm"])
    assert _terms(pod) == [
        [_in("node.kubernetes.io/instance-type", "p4de.24xlarge", "p5.48xlarge", "p5.4xlarge")]
    ]
    assert pod["tolerations"] == [GPU_TOLERATION]


def test_aks_names_the_vm_sizes_and_tolerates_the_sku_taint() -> None:
    pod = _pod(AKS, include=["a100", "h100_sxm"])
    assert _terms(pod) == [
        [
            _in(
                "node.kubernetes.io/instance-type",
                "Standard_NC24ads_A100_v4",
                "Standard_NC48ads_A100_v4",
                "Standard_NC96ads_A100_v4",
                "Standard_ND96isr_H100_v5",
            )
        ]
    ]
    sku = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    assert pod["tolerations"] == [GPU_TOLERATION, sku]


@pytest.mark.parametrize("profile", [GKE, EKS, EKS_NODEGROUP, AKS], ids=lambda p: p.name)
def test_cloud_profiles_never_ask_for_labels_set_after_boot(profile: GpuProfile) -> None:
    pod = _pod(profile, minVramGbPerGpu=24)
    keys = {expression["key"] for term in _terms(pod) for expression in term}
    assert keys
    assert not any(key.startswith("nvidia.com/") for key in keys)


@pytest.mark.parametrize("profile", BUILTIN.values(), ids=lambda p: p.name)
def test_gpus_a_profile_cannot_place_are_not_eligible(profile: GpuProfile) -> None:
    offered = [gpu.name for gpu in CATALOG.values() if profile.offers(gpu) and gpu.vendor == "nvidia"]
    pod = _pod(profile, minVramGbPerGpu=16)
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert offered
    if profile is not GFD:
        assert len(offered) < len(CATALOG) - 1


def test_a_chute_whose_gpus_the_profile_lacks_names_the_profile() -> None:
    with pytest.raises(NoEligibleGpu, match="admits no GPU in GPU profile gke"):
        _pod(GKE, include=["4090"])


def test_amd_gpus_ask_for_amd_resources_and_the_labellers_label() -> None:
    pod = _pod(GFD, include=["mi300x"])
    assert _terms(pod) == [[_in("amd.com/gpu.device-id", "74a1", "74b5")]]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["amd.com/gpu"] == 1
    assert "nvidia.com/gpu" not in limits
    assert pod["tolerations"] == [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    aks = _pod(AKS, include=["mi300x"])
    assert _terms(aks) == [[_in("node.kubernetes.io/instance-type", "Standard_ND96isr_MI300X_v5")]]


def test_user_terms_are_kept_once_per_gpu_term() -> None:
    zone = _in("zone", "a")
    document = chute_with(
        nodeSelector={"gpuCount": 1, "include": ["a100_40gb_sxm", "h100_sxm"]},
        pod={
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [zone]}]
                    }
                }
            }
        },
    )
    manifests = render(parse_chute(document), RenderOptions(catalog=CATALOG, gpu_profile=EKS))
    pod = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    terms = _terms(pod)
    assert len(terms) == 2
    assert all(term[0] == zone for term in terms)


def _custom_file(tmp_path: Path) -> Path:
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "profiles:\n"
        "  custom:\n"
        "    label: example.com/gpu\n"
        "    tolerations: [{key: example.com/dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n"
        "    gpus: {h100_sxm: [h100], l4: l4-24}\n"
    )
    return path


def test_the_custom_profile_uses_the_platforms_label_values_and_taints(tmp_path: Path) -> None:
    custom = load_profiles(_custom_file(tmp_path))["custom"]
    pod = _pod(custom, minVramGbPerGpu=24)
    assert _terms(pod) == [[_in("example.com/gpu", "h100", "l4-24")]]
    assert pod["tolerations"][1] == {
        "key": "example.com/dedicated",
        "operator": "Equal",
        "value": "gpu",
        "effect": "NoSchedule",
    }


def test_a_custom_profile_without_a_label_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text("profiles: {custom: {gpus: {l4: [x]}}}\n")
    with pytest.raises(CatalogError, match=r"profiles\.custom needs label"):
        load_profiles(path)


# -- auto ---------------------------------------------------------------------------------------


def _node(**labels: str) -> dict[str, str]:
    return {"kubernetes.io/os": "linux", **{key.replace("__", "/"): v for key, v in labels.items()}}


GKE_GPU = {"cloud.google.com/gke-nodepool": "gpu", "cloud.google.com/gke-accelerator": "nvidia-l4"}
GFD_GPU = {"nvidia.com/gpu.product": "NVIDIA-L4"}
KARPENTER_GPU = {"karpenter.sh/nodepool": "gpu", "karpenter.k8s.aws/instance-gpu-name": "h100"}


def test_auto_picks_the_profile_most_gpu_nodes_carry() -> None:
    pick = pick_profile([GFD_GPU, GFD_GPU, KARPENTER_GPU, {}], BUILTIN, CATALOG.values())
    assert (pick.profile.name, pick.matched, pick.source) == ("gfd", True, "auto")
    assert "2 of 4 nodes carry its nvidia.com/gpu.product" in pick.note()


def test_auto_prefers_the_autoscalers_labels_when_a_node_carries_both() -> None:
    assert pick_profile([GKE_GPU | GFD_GPU], BUILTIN, CATALOG.values()).profile is GKE


def test_auto_without_gpu_nodes_goes_by_the_platforms_label() -> None:
    nodes = [{"cloud.google.com/gke-nodepool": "default"}, {"cloud.google.com/gke-nodepool": "default"}]
    pick = pick_profile(nodes, BUILTIN, CATALOG.values())
    assert pick.profile is GKE
    assert "no GPU node yet" in pick.reason


def test_an_instance_type_alone_is_not_an_eks_node_group() -> None:
    plain = {"node.kubernetes.io/instance-type": "p5.48xlarge"}
    assert pick_profile([plain], BUILTIN, CATALOG.values()).matched is False
    grouped = plain | {"eks.amazonaws.com/nodegroup": "gpu"}
    assert pick_profile([grouped], BUILTIN, CATALOG.values()).profile is EKS_NODEGROUP


def test_auto_that_matches_nothing_falls_back_to_gfd_and_says_so() -> None:
    pick = pick_profile([{"kubernetes.io/os": "linux"}], BUILTIN, CATALOG.values())
    assert pick.profile is GFD
    assert not pick.matched
    assert "no node of the 1 carries the labels of any GPU profile" in pick.note()
