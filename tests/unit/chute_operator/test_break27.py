"""Breaking pass 27: GPU profiles, the auto pick, the version rules and the summary column, attacked.

Each test states what should hold and is marked xfail(strict) while it does not.
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
from chute_operator.gpu_profile_pick import pick_profile
from chute_operator.gpu_profile_setup import node_labels
from chute_operator.gpu_profiles import AKS, BUILTIN, GFD, GKE, load_profiles
from chute_operator.gpus import CatalogError, NoEligibleGpu, builtin_catalog, load_catalog
from chute_operator.render import render
from chute_operator.status import Observation, compute_status
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions
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


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: on EKS Auto Mode auto picks eks (karpenter.sh/nodepool) and says 'no GPU "
    "node yet' while an H100 node runs; its karpenter.k8s.aws/ affinity matches no Auto Mode node",
)
def test_auto_never_picks_a_profile_that_cannot_place_the_gpu_node_it_sees() -> None:
    pick = pick_profile([AUTO_MODE_H100, AUTO_MODE_SYSTEM], BUILTIN, CATALOG.values())
    placed = pick.profile.node_gpu(AUTO_MODE_H100, CATALOG.values())
    assert placed is not None or not pick.matched, pick.note()


# -- the custom profile: hostile and careless input -----------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: custom label keys/values are not checked as Kubernetes labels: an invalid "
    "key makes the API server refuse every GPU Chute's Deployment (ApplyFailed); a value no label can "
    "have matches no node (Unschedulable, silently)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: a custom profile naming a GPU the catalog lacks (a typo) is silently ignored",
)
def test_a_custom_profile_naming_an_unknown_gpu_is_refused(tmp_path: Path) -> None:
    path = _custom(tmp_path, "    label: example.com/gpu\n    gpus: {h100sxm: [h100]}\n")
    with pytest.raises(CatalogError, match="h100sxm"):
        load_profiles(path)


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: a valid Kubernetes toleration with tolerationSeconds (an integer) is "
    "refused, so the operator cannot start; the chart's schema accepts it",
)
def test_a_custom_toleration_may_have_toleration_seconds(tmp_path: Path) -> None:
    path = _custom(
        tmp_path,
        "    label: example.com/gpu\n    gpus: {h100_sxm: [h100]}\n"
        "    tolerations: [{key: example.com/gpu, operator: Exists, effect: NoExecute,"
        " tolerationSeconds: 300}]\n",
    )
    custom = load_profiles(path)["custom"]
    assert dict(custom.tolerations[0]).get("tolerationSeconds") == 300


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: a custom toleration without a key (operator Exists) tolerates every taint "
    "(cordon-adjacent, not-ready, other tenants' dedicated nodes) and is accepted silently",
)
def test_a_custom_toleration_of_every_taint_is_refused(tmp_path: Path) -> None:
    path = _custom(
        tmp_path,
        "    label: example.com/gpu\n    gpus: {h100_sxm: [h100]}\n    tolerations: [{operator: Exists}]\n",
    )
    with pytest.raises(CatalogError):
        load_profiles(path)


# -- the catalog --------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: replacing a built-in GPU by name (to add a product) drops its cloud "
    "labels: it silently stops being eligible on gke/eks/aks",
)
def test_overriding_a_gpus_products_keeps_its_cloud_labels(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "gpus:\n  - {name: h100_sxm, vramGb: 80, products: [NVIDIA-H100-80GB-HBM3, NVIDIA-H100-SXM5-80GB]}\n"
    )
    assert GKE.offers(load_catalog(path)["h100_sxm"])


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: eligibility ignores how many GPUs a cloud profile's instance types have: "
    "AKS A100 PCIe sizes have 1, 2 or 4 GPUs, so gpuCount 8 renders an affinity no node or autoscaler "
    "can ever satisfy (Unschedulable forever, not InvalidSpec)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: auto lists every whole Node (status.images included) in one unpaged "
    "response; at 10,000 nodes that is hundreds of MB against the chart's 512Mi limit",
)
def test_auto_lists_nodes_in_pages() -> None:
    client = _RecordingClient()
    asyncio.run(node_labels(cast(Any, client)))
    assert client.kwargs.get("chunk_size")


# -- the version rules ----------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: when the dry run fails (no create on HPAs there, a webhook) on a 1.35+ "
    "server with HPAConfigurableTolerance off, tolerance is rendered, the server drops it, and drift "
    "sees it missing: re-applied at every reconcile, and no FieldUnsupported",
)
def test_a_tolerance_the_server_dropped_is_not_reapplied_forever() -> None:
    server = capabilities_from({"major": "1", "minor": "36", "gitVersion": "v1.36.3"}, None)
    options = RenderOptions(**{**OPTIONS.__dict__, "server": server})
    hpa = _by_kind(render(_chute(minInstances=1, maxInstances=3, scalingThreshold=0.5), options))[
        "HorizontalPodAutoscaler"
    ]
    live = copy.deepcopy(hpa)
    del live["spec"]["behavior"]["scaleUp"]["tolerance"]  # what a server with the gate off stores
    assert not drifted(hpa, live)


# -- the ELIGIBLE column --------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: a GPU Chute whose selector admits no GPU shows ELIGIBLE '0', exactly "
    "what a CPU-only Chute shows",
)
def test_a_gpu_chute_with_no_eligible_gpu_is_told_apart_from_cpu_only() -> None:
    invalid = Observation(
        generation=1,
        selector="chutes.ai/chute=m",
        workload=None,
        invalid_spec="spec.nodeSelector admits no GPU in GPU profile gke",
    )
    assert compute_status(invalid, NOW)["eligibleGpuSummary"] != "0"


# -- explain --------------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: explain names an AMD node's GPU by GFD's NVIDIA label: "
    "'GPU mi300x (nvidia.com/gpu.product=None) not eligible'",
)
def test_explain_names_an_amd_nodes_gpu_by_its_own_label() -> None:
    pod = _deployment(GFD, minVramGbPerGpu=16)["spec"]["template"]["spec"]
    node = {
        "metadata": {"name": "amd-0", "labels": {"amd.com/gpu.device-id": "74a1"}},
        "status": {"allocatable": {"amd.com/gpu": "8"}, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    selector = parse_chute(chute_with(nodeSelector={"gpuCount": 1})).spec.node_selector
    (verdict,) = explain_nodes(pod, [node], [], CATALOG, selector, GFD)
    assert not any("=None" in reason for reason in verdict.reasons), verdict.reasons
