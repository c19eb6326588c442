"""Breaking pass 27: the chart's GPU profile values, attacked (xfail(strict) while they hold)."""

from __future__ import annotations

import pytest

from tests.chart.helm import Helm, find


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: gpu.profile=custom without gpu.custom.label installs; the operator then "
    "refuses to start (unknown GPU profile 'custom')",
)
def test_the_custom_profile_without_a_label_is_refused_at_install(helm: Helm) -> None:
    helm.template_error("gpu.profile=custom")


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: a custom label key no Kubernetes label can have installs (the schema "
    "checks no syntax); every GPU Chute's Deployment is then refused",
)
def test_an_invalid_custom_label_key_is_refused_at_install(helm: Helm) -> None:
    helm.template_error(
        "gpu.profile=custom", "gpu.custom.label=example.com/gpu type", "gpu.custom.gpus.l4=l4"
    )


@pytest.mark.xfail(
    strict=True,
    reason="breaking pass 27: with rbac.clusterDiscovery=false the default gpu.profile=auto gets no "
    "list on nodes: auto silently falls back to gfd on every cloud",
)
def test_auto_can_list_nodes_whatever_cluster_discovery_says(helm: Helm) -> None:
    objects = helm.template(sets=("rbac.clusterDiscovery=false",))
    rules = [rule for role in find(objects, "ClusterRole") for rule in role.get("rules") or []]
    assert any("nodes" in rule.get("resources", []) and "list" in rule.get("verbs", []) for rule in rules)
