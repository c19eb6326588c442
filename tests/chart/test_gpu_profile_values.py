"""The chart's GPU profile values: the custom profile's label, values and tolerations checked at install,
and auto's node list whatever rbac.clusterDiscovery says (found by the breaking pass of issue 27).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chute_operator.gpu_profiles import load_profiles
from tests.chart.helm import Helm, find


def test_the_custom_profile_without_a_label_is_refused_at_install(helm: Helm) -> None:
    helm.template_error("gpu.profile=custom")


def test_an_invalid_custom_label_key_is_refused_at_install(helm: Helm) -> None:
    helm.template_error(
        "gpu.profile=custom", "gpu.custom.label=example.com/gpu type", "gpu.custom.gpus.l4=l4"
    )


def test_auto_can_list_nodes_whatever_cluster_discovery_says(helm: Helm) -> None:
    objects = helm.template(sets=("rbac.clusterDiscovery=false",))
    rules = [rule for role in find(objects, "ClusterRole") for rule in role.get("rules") or []]
    assert any("nodes" in rule.get("resources", []) and "list" in rule.get("verbs", []) for rule in rules)


def test_the_custom_profile_refusal_says_what_is_missing(helm: Helm) -> None:
    assert "gpu.custom.label" in helm.template_error("gpu.profile=custom")


@pytest.mark.parametrize(
    "sets",
    [
        ("gpu.custom.gpus.l4=L4 GPU",),
        ("gpu.custom.gpus.l4=" + "x" * 64,),
        ("gpu.custom.tolerations[0].operator=Exists",),
        ("gpu.custom.tolerations[0].key=a.b/c", "gpu.custom.tolerations[0].operator=Sometimes"),
        ("gpu.custom.tolerations[0].key=a.b/c", "gpu.custom.tolerations[0].effect=NoLater"),
    ],
    ids=["value-with-space", "value-64-chars", "toleration-without-key", "operator", "effect"],
)
def test_custom_values_no_kubernetes_label_or_toleration_can_have_are_refused(
    helm: Helm, sets: tuple[str, ...]
) -> None:
    helm.template_error("gpu.profile=custom", "gpu.custom.label=example.com/gpu", *sets)


def test_a_valid_custom_profile_with_toleration_seconds_installs(helm: Helm, tmp_path: Path) -> None:
    objects = helm.template(
        sets=(
            "gpu.profile=custom",
            "gpu.custom.label=example.com/gpu",
            "gpu.custom.gpus.l4=l4",
            "gpu.custom.tolerations[0].key=example.com/gpu",
            "gpu.custom.tolerations[0].operator=Exists",
            "gpu.custom.tolerations[0].effect=NoExecute",
            "gpu.custom.tolerations[0].tolerationSeconds=300",
        )
    )
    (config,) = [c for c in find(objects, "ConfigMap") if "gpus.yaml" in c.get("data", {})]
    (tmp_path / "gpus.yaml").write_text(config["data"]["gpus.yaml"])
    (toleration,) = load_profiles(tmp_path / "gpus.yaml")["custom"].tolerations
    assert toleration["tolerationSeconds"] == 300


def test_eks_auto_is_a_profile_the_chart_accepts(helm: Helm) -> None:
    assert helm.template(sets=("gpu.profile=eks-auto",))
