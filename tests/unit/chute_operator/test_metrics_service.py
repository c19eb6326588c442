"""The metrics port stays inside the cluster whatever the Service's type (issue 27, breaking pass of the
doors, finding 2): a NodePort or LoadBalancer Service publishes the serving port only; the ServiceMonitor
reads a headless ClusterIP Service of the metrics port, ``<name>-metrics``, pruned once the Chute's
Service is ClusterIP again (which publishes both, as before)."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.plan import PRUNABLE, Found, plan_prune
from chute_operator.render import render
from chute_operator.wiring import METRICS_SERVICE_SUFFIX, SERVICE_ROLE_LABEL, child_name
from tests.unit.chute_operator.test_plan import _snapshot
from tests.unit.chute_operator.test_render import OPTIONS, _chute, _validate_upstream

Manifest = dict[str, Any]


def _services(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Service"}


def _ports(service: Manifest) -> list[tuple[str, int]]:
    return [(p["name"], p["port"]) for p in service["spec"]["ports"]]


def _monitor(manifests: list[Manifest]) -> Manifest:
    return next(m for m in manifests if m["kind"] == "ServiceMonitor")


def test_a_cluster_ip_service_publishes_serving_and_metrics_ports_and_no_metrics_service() -> None:
    manifests = render(_chute(), OPTIONS)
    services = _services(manifests)
    (service,) = services.values()
    assert _ports(service) == [("http", 80), ("metrics", 9090)]
    assert _monitor(manifests)["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_a_service_outside_the_cluster_publishes_only_the_serving_port(kind: str) -> None:
    chute = _chute(service={"type": kind, "port": 80, "annotations": {"lb.example/internal": "false"}})
    manifests = render(chute, OPTIONS)
    _validate_upstream(manifests)
    name = chute.metadata.name
    services = _services(manifests)
    assert set(services) == {name, name + METRICS_SERVICE_SUFFIX}
    public, metrics = services[name], services[name + METRICS_SERVICE_SUFFIX]
    assert public["spec"]["type"] == kind
    assert _ports(public) == [("http", 80)]
    # the metrics Service: headless, in-cluster only, no load balancer annotations, owned like the rest
    assert metrics["spec"].get("clusterIP") == "None"  # headless
    assert metrics["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert _ports(metrics) == [("metrics", 9090)]
    assert metrics["spec"]["selector"] == public["spec"]["selector"]
    assert "annotations" not in metrics["metadata"]
    assert metrics["metadata"]["ownerReferences"] == public["metadata"]["ownerReferences"]
    assert metrics["metadata"]["labels"][SERVICE_ROLE_LABEL] == "metrics"
    assert SERVICE_ROLE_LABEL not in public["metadata"]["labels"]
    # the ServiceMonitor selects the metrics Service only
    selector = _monitor(manifests)["spec"]["selector"]["matchLabels"]
    assert selector[SERVICE_ROLE_LABEL] == "metrics"
    assert all(metrics["metadata"]["labels"].get(k) == v for k, v in selector.items())
    kinds = [m["kind"] for m in manifests]
    assert kinds.index("NetworkPolicy") < kinds.index("Service") < kinds.index("Deployment")


def test_without_a_service_monitor_no_metrics_service_is_rendered() -> None:
    chute = _chute(service={"type": "LoadBalancer"}, monitoring={"serviceMonitor": False})
    services = _services(render(chute, OPTIONS))
    assert list(services) == [chute.metadata.name]
    assert _ports(services[chute.metadata.name]) == [("http", 80)]


def test_the_metrics_service_of_a_chute_back_to_cluster_ip_is_pruned_and_a_foreign_one_never() -> None:
    assert "Service" in PRUNABLE
    snapshot = _snapshot(prunable={})
    ours = {
        "kind": "Service",
        "metadata": {
            "name": "a" + METRICS_SERVICE_SUFFIX,
            "ownerReferences": [{"uid": snapshot.uid, "controller": True}],
        },
    }
    foreign = {"kind": "Service", "metadata": {"name": "a-other", "ownerReferences": []}}
    main = next(f.manifest for f in snapshot.children if f.manifest["kind"] == "Service")
    owner = [{"uid": snapshot.uid, "controller": True}]
    main_live = {**main, "metadata": {**main["metadata"], "ownerReferences": owner}}
    pruned = plan_prune(_snapshot(prunable={"Service": (main_live, ours, foreign)}))
    assert [(p.kind, p.name) for p in pruned] == [("Service", "a" + METRICS_SERVICE_SUFFIX)]
    assert isinstance(snapshot.children[0], Found)


@pytest.mark.parametrize("length", [1, 30, 55, 56, 63])
def test_child_names_stay_within_a_service_names_63_characters(length: int) -> None:
    name = "m" * length
    child = child_name(name, METRICS_SERVICE_SUFFIX)
    assert len(child) <= 63
    assert child.endswith(METRICS_SERVICE_SUFFIX)
    if len(name) + len(METRICS_SERVICE_SUFFIX) <= 63:
        assert child == name + METRICS_SERVICE_SUFFIX
    assert child != child_name(name[:-1] + "n", METRICS_SERVICE_SUFFIX)  # names that differ stay apart


def test_a_long_chute_name_gets_a_valid_metrics_service() -> None:
    document_name = "x" * 63
    chute = _chute(service={"type": "NodePort"})
    chute = chute.model_copy(update={"metadata": chute.metadata.model_copy(update={"name": document_name})})
    services = _services(render(chute, OPTIONS))
    assert len(services) == 2
    assert all(len(name) <= 63 for name in services)
