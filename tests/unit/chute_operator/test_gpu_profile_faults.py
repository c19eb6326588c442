"""GPU profiles against hostile and careless input: the auto pick (EKS Auto Mode, unplaced GPU nodes,
paged node lists), custom labels and tolerations, catalog overrides, GPUs per instance type, the HPA
tolerance a server drops, the ELIGIBLE summary, explain's label (found by the breaking pass of issue 27).
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from chute_operator.capabilities import capabilities_from
from chute_operator.drift import drifted
from chute_operator.explain import explain_nodes
from chute_operator.explain_cli import explain_chute
from chute_operator.gpu_profile_pick import named_pick, pick_profile
from chute_operator.gpu_profile_setup import node_labels
from chute_operator.gpu_profiles import AKS, BUILTIN, GFD, GKE, load_profiles
from chute_operator.gpus import CatalogError, NoEligibleGpu, builtin_catalog, load_catalog
from chute_operator.render import render
from chute_operator.status import Observation, compute_status
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions, resolve
from tests.invalid_chutes import chute_with
from tests.unit.chute_operator.test_render import OPTIONS, _by_kind, _chute

CATALOG = builtin_catalog()
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _custom(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gpus.yaml"
    path.write_text("profiles:\n  custom:\n" + body)
    return path


def _deployment(profile: Any, **selector: Any) -> dict[str, Any]:
    document = chute_with(nodeSelector={"gpuCount": 1, **selector})
    manifests = render(parse_chute(document), RenderOptions(catalog=CATALOG, gpu_profile=profile))
    return next(m for m in manifests if m["kind"] == "Deployment")


# -- auto on EKS Auto Mode ------------------------------------------------------------------------

# An EKS Auto Mode GPU node: Auto Mode runs Karpenter (karpenter.sh/nodepool) but its well-known
# labels are eks.amazonaws.com/instance-*, never karpenter.k8s.aws/instance-*.
AUTO_MODE_H100 = {
    "karpenter.sh/nodepool": "gpu",
    "eks.amazonaws.com/compute-type": "auto",
    "eks.amazonaws.com/instance-gpu-name": "h100",
    "eks.amazonaws.com/instance-gpu-manufacturer": "nvidia",
    "node.kubernetes.io/instance-type": "p5.48xlarge",
}
AUTO_MODE_SYSTEM = {"karpenter.sh/nodepool": "system", "eks.amazonaws.com/compute-type": "auto"}


def test_auto_never_picks_a_profile_that_cannot_place_the_gpu_node_it_sees() -> None:
    pick = pick_profile([AUTO_MODE_H100, AUTO_MODE_SYSTEM], BUILTIN, CATALOG.values())
    placed = pick.profile.node_gpu(AUTO_MODE_H100, CATALOG.values())
    assert placed is not None or not pick.matched, pick.note()


# -- the custom profile: hostile and careless input -----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "    label: example.com/gpu type\n    gpus: {h100_sxm: [h100]}\n",
        "    label: example.com/gpu\n    gpus: {h100_sxm: ['H100 SXM']}\n",
        "    label: example.com/gpu\n    gpus: {h100_sxm: [{'bad key!': x}]}\n",
        "    label: example.com/gpu\n    gpus: {h100_sxm: ['" + "x" * 64 + "']}\n",
    ],
    ids=["key-with-space", "value-with-space", "mapping-key", "value-64-chars"],
)
def test_a_custom_profile_with_invalid_label_syntax_is_refused(tmp_path: Path, body: str) -> None:
    def load_and_render() -> None:
        profile = load_profiles(_custom(tmp_path, body))["custom"]
        _deployment(profile, include=["h100_sxm"])  # renders the invalid label into the affinity

    with pytest.raises(CatalogError):
        load_and_render()


def test_a_custom_profile_naming_an_unknown_gpu_is_refused(tmp_path: Path) -> None:
    path = _custom(tmp_path, "    label: example.com/gpu\n    gpus: {h100sxm: [h100]}\n")
    with pytest.raises(CatalogError, match="h100sxm"):
        load_profiles(path)


def test_a_custom_toleration_may_have_toleration_seconds(tmp_path: Path) -> None:
    path = _custom(
        tmp_path,
        "    label: example.com/gpu\n    gpus: {h100_sxm: [h100]}\n"
        "    tolerations: [{key: example.com/gpu, operator: Exists, effect: NoExecute,"
        " tolerationSeconds: 300}]\n",
    )
    custom = load_profiles(path)["custom"]
    assert dict(custom.tolerations[0]).get("tolerationSeconds") == 300


def test_a_custom_toleration_of_every_taint_is_refused(tmp_path: Path) -> None:
    path = _custom(
        tmp_path,
        "    label: example.com/gpu\n    gpus: {h100_sxm: [h100]}\n    tolerations: [{operator: Exists}]\n",
    )
    with pytest.raises(CatalogError):
        load_profiles(path)


# -- the catalog --------------------------------------------------------------------------------


def test_overriding_a_gpus_products_keeps_its_cloud_labels(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "gpus:\n  - {name: h100_sxm, vramGb: 80, products: [NVIDIA-H100-80GB-HBM3, NVIDIA-H100-SXM5-80GB]}\n"
    )
    assert GKE.offers(load_catalog(path)["h100_sxm"])


def test_a_gpu_count_no_instance_type_of_the_profile_has_is_not_eligible() -> None:
    with pytest.raises(NoEligibleGpu):
        _deployment(AKS, include=["a100"], gpuCount=8)


# -- auto at scale --------------------------------------------------------------------------------


class _RecordingClient:
    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def list(self, resource: Any, **kwargs: Any) -> Any:
        self.kwargs = kwargs

        async def nothing() -> Any:
            empty: tuple[Any, ...] = ()
            for item in empty:
                yield item

        return nothing()


def test_auto_lists_nodes_in_pages() -> None:
    client = _RecordingClient()
    asyncio.run(node_labels(cast(Any, client)))
    assert client.kwargs.get("chunk_size")


# -- the version rules ----------------------------------------------------------------------------


def test_a_tolerance_the_server_dropped_is_not_reapplied_forever() -> None:
    server = capabilities_from({"major": "1", "minor": "36", "gitVersion": "v1.36.3"}, None)
    options = RenderOptions(**{**OPTIONS.__dict__, "server": server})
    hpa = _by_kind(render(_chute(minInstances=1, maxInstances=3, scalingThreshold=0.5), options))[
        "HorizontalPodAutoscaler"
    ]
    live = copy.deepcopy(hpa)
    del live["spec"]["behavior"]["scaleUp"]["tolerance"]  # what a server with the gate off stores
    assert not drifted(hpa, live)
    changed = copy.deepcopy(live)
    changed["spec"]["maxReplicas"] = 9
    assert drifted(hpa, changed)  # any other difference still applies


def test_a_tolerance_the_server_dropped_is_reported_field_unsupported() -> None:
    server = capabilities_from({"major": "1", "minor": "36", "gitVersion": "v1.36.3"}, None)
    options = RenderOptions(**{**OPTIONS.__dict__, "server": server})
    workload = resolve(_chute(minInstances=1, maxInstances=3, scalingThreshold=0.5), options)
    dropped = {"spec": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}}}
    kept = {"spec": {"behavior": {"scaleUp": {"tolerance": "0"}}}}

    def supported(hpa: dict[str, Any]) -> list[dict[str, Any]]:
        observation = Observation(1, "chutes.ai/chute=m", workload, hpa=hpa)
        return [c for c in compute_status(observation, NOW)["conditions"] if c["type"] == "Supported"]

    (condition,) = supported(dropped)
    assert (condition["status"], condition["reason"]) == ("False", "FieldUnsupported")
    assert "behavior.scaleUp.tolerance" in condition["message"]
    assert supported(kept) == []


# -- the ELIGIBLE column --------------------------------------------------------------------------


def test_a_gpu_chute_with_no_eligible_gpu_is_told_apart_from_cpu_only() -> None:
    invalid = Observation(
        generation=1,
        selector="chutes.ai/chute=m",
        workload=None,
        invalid_spec="spec.nodeSelector admits no GPU in GPU profile gke",
    )
    assert compute_status(invalid, NOW)["eligibleGpuSummary"] != "0"


def test_an_invalid_spec_keeps_no_stale_eligible_gpus() -> None:
    stale = {"eligibleGpus": ["l4"], "eligibleGpuSummary": "1: l4"}
    invalid = Observation(1, "chutes.ai/chute=m", None, invalid_spec="bad", previous=stale)
    status = compute_status(invalid, NOW)
    assert (status["eligibleGpus"], status["eligibleGpuSummary"]) == ([], "none")


# -- explain --------------------------------------------------------------------------------------


def test_explain_names_an_amd_nodes_gpu_by_its_own_label() -> None:
    pod = _deployment(GFD, minVramGbPerGpu=16)["spec"]["template"]["spec"]
    node = {
        "metadata": {"name": "amd-0", "labels": {"amd.com/gpu.device-id": "74a1"}},
        "status": {"allocatable": {"amd.com/gpu": "8"}, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    selector = parse_chute(chute_with(nodeSelector={"gpuCount": 1})).spec.node_selector
    (verdict,) = explain_nodes(pod, [node], [], CATALOG, selector, GFD)
    assert not any("=None" in reason for reason in verdict.reasons), verdict.reasons


# -- the fixes' edges -----------------------------------------------------------------------------


def test_auto_is_not_matched_when_a_gpu_node_carries_no_label_of_the_pick() -> None:
    plain_gpu_node = {"karpenter.sh/nodepool": "gpu"}  # GPUs allocatable, no GPU label at all
    pick = pick_profile([AUTO_MODE_SYSTEM, plain_gpu_node], BUILTIN, CATALOG.values(), [plain_gpu_node])
    assert not pick.matched
    assert "1 node(s) with GPUs" in pick.note()


def test_auto_picks_eks_auto_by_its_compute_type_before_any_gpu_node_exists() -> None:
    pick = pick_profile([AUTO_MODE_SYSTEM], BUILTIN, CATALOG.values())
    assert (pick.profile.name, pick.matched) == ("eks-auto", True)


def test_eks_auto_places_the_a100_sizes_by_gpu_memory() -> None:
    terms = _deployment(BUILTIN["eks-auto"], include=["a100_sxm"])["spec"]["template"]["spec"]["affinity"]
    keys = {
        e["key"]
        for t in terms["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        for e in t["matchExpressions"]
    }
    assert keys == {"eks.amazonaws.com/instance-gpu-name", "eks.amazonaws.com/instance-gpu-memory"}


def test_instance_types_with_too_few_gpus_are_left_out_of_the_affinity() -> None:
    pod = _deployment(AKS, include=["a100"], gpuCount=2)["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"][0]["values"] == ["Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4"]


@pytest.mark.parametrize(
    "toleration",
    [
        "{key: a.b/c, operator: Sometimes}",
        "{key: a.b/c, effect: NoLater}",
        "{key: a.b/c, operator: Exists, value: x}",
        "{key: a.b/c, effect: NoSchedule, tolerationSeconds: 30}",
        "{key: a.b/c, effect: NoExecute, tolerationSeconds: '30'}",
        "{key: a.b/c, colour: red}",
    ],
)
def test_a_custom_toleration_the_api_server_would_refuse_is_refused(tmp_path: Path, toleration: str) -> None:
    path = _custom(
        tmp_path,
        f"    label: example.com/gpu\n    gpus: {{h100_sxm: [h100]}}\n    tolerations: [{toleration}]\n",
    )
    with pytest.raises(CatalogError):
        load_profiles(path)


def test_a_catalog_gpus_per_node_must_be_a_positive_integer(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text("gpus:\n  - {name: x, vramGb: 8, products: [X], labels: {aks: {Standard_X: 0}}}\n")
    with pytest.raises(CatalogError, match="positive integer"):
        load_catalog(path)


def test_explain_lists_only_the_instance_types_with_enough_gpus() -> None:
    chute = parse_chute(chute_with(nodeSelector={"gpuCount": 2, "include": ["a100"]}))
    report = "\n".join(explain_chute(chute, CATALOG, None, named_pick(AKS)))
    assert "Standard_NC48ads_A100_v4" in report
    assert "Standard_NC24ads_A100_v4" not in report
