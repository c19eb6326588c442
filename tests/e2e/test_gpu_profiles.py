"""Each GPU profile places a Chute on the local cluster's node pool of its platform (kwok nodes labelled
and tainted as GKE, EKS with Karpenter and AKS label and taint theirs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chute_shared.cluster import CHUTE_LABEL
from tests.kube_helpers import apply, condition, eventually, get, items
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e

POOLS = {"gke": "gke-l4", "eks": "eks-h100", "aks": "aks-a100"}
"""Each profile's pool in chute_devcluster.nodes.cloud_node_pools()."""


@pytest.fixture
def profile_operator(
    request: pytest.FixtureRequest,
    control_plane: Any,
    chute_crd: Path,
    namespace: str,
    tmp_path: Path,
    session_operator_paused: None,
) -> Iterator[OperatorProcess]:
    """An operator of its own, watching only the test's namespace, with the profile named by the test
    (the session's operators, which watch every namespace, paused meanwhile)."""
    process = OperatorProcess(
        control_plane.kubeconfig,
        tmp_path,
        f"op-profile-{request.param}",
        namespaces=(namespace,),
        CHUTE_OPERATOR_GPU_PROFILE=request.param,
        CHUTE_OPERATOR_LEADER_ELECTION="false",
    ).start()
    yield process
    process.stop()


def _chute(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name},
        "spec": {
            "image": "vllm/vllm-openai:v0.10.1",
            "template": "vllm",
            "model": {"name": "org/model"},
            "nodeSelector": {"gpuCount": 1, "minVramGbPerGpu": 24},
            "resources": {"cpu": "1", "memory": "4Gi"},
        },
    }


@pytest.mark.parametrize("profile_operator", list(POOLS), indirect=True)
def test_a_chute_lands_on_its_platforms_pool(
    control_plane: Any, namespace: str, profile_operator: Any
) -> None:
    profile = profile_operator.identity.removeprefix("op-profile-")
    apply(control_plane, _chute("placed"), namespace)

    def nodes() -> set[str]:
        pods = items(control_plane, "pods", namespace, f"{CHUTE_LABEL}=placed")
        return {p["spec"].get("nodeName") or "" for p in pods}

    eventually(lambda: nodes() and "" not in nodes(), timeout=90, what="the Chute's pod scheduled")
    assert nodes() == {f"sim-{POOLS[profile]}-0"}
    ready = condition(get(control_plane, "chute", "placed", namespace), "Ready")
    assert ready.get("reason") != "Unschedulable"
    assert profile_operator.metric("chute_operator_gpu_profile", profile=profile, source="setting") == 1


@pytest.mark.parametrize("profile_operator", ["auto"], indirect=True)
def test_auto_picks_gfd_on_the_local_cluster_and_says_so(
    control_plane: Any, namespace: str, profile_operator: Any
) -> None:
    # 8 nodes carry GFD's labels, one each GKE's, Karpenter's and AKS's: GFD wins, and says that it
    # cannot place those three nodes' GPUs (matched="false").
    assert profile_operator.metric("chute_operator_gpu_profile", profile="gfd", source="auto") == 1
    assert profile_operator.metric("chute_operator_gpu_profile", profile="gfd", matched="false") == 1
    unplaceable = _chute("too-big")
    unplaceable["spec"]["nodeSelector"] = {"gpuCount": 8, "include": ["l4"]}
    apply(control_plane, unplaceable, namespace)

    def ready() -> dict[str, Any]:
        return condition(get(control_plane, "chute", "too-big", namespace), "Ready")

    eventually(lambda: ready().get("reason") == "Unschedulable", timeout=90, what="Unschedulable")
    assert "GPU profile gfd (auto:" in ready().get("message", "")
