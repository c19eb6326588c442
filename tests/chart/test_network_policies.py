"""The operator's and the activator's own NetworkPolicies: on by default, off with a value, each
admitting only what its pods serve and letting out only what they call."""

from __future__ import annotations

from typing import Any

import yaml

from chute_shared.cluster import CHUTE_LABEL
from chute_shared.ports import METRICS_PORT, SIDECAR_PORT
from tests.chart.helm import Helm, find, one, operator_deployment

OPERATOR, ACTIVATOR = "co-chute-operator", "co-chute-operator-activator"
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}

CHUTES = [
    {
        "namespaceSelector": {},
        "podSelector": {"matchExpressions": [{"key": CHUTE_LABEL, "operator": "Exists"}]},
    }
]
"""Every Chute's pods, in every namespace."""
BASE_EGRESS: dict[tuple[str, Any], list[Any] | None] = {
    ("TCP", 443): None,  # the API server is not a pod: by port, to any address
    ("TCP", 6443): None,
    ("UDP", 53): [DNS],
    ("TCP", 53): [DNS],
}


def admitted(policy: dict[str, Any]) -> dict[tuple[str, Any], list[Any] | None]:
    """(protocol, port) -> the peers a rule admits it from (None: from anywhere)."""
    found: dict[tuple[str, Any], list[Any] | None] = {}
    for rule in policy["spec"].get("ingress") or []:
        for port in rule["ports"]:
            found[port.get("protocol", "TCP"), port["port"]] = rule.get("from")
    return found


def let_out(policy: dict[str, Any]) -> dict[tuple[str, Any], list[Any] | None]:
    """(protocol, port) -> the peers a rule lets it out to (None: to anywhere)."""
    found: dict[tuple[str, Any], list[Any] | None] = {}
    for rule in policy["spec"].get("egress") or []:
        for port in rule["ports"]:
            found[port.get("protocol", "TCP"), port["port"]] = rule.get("to")
    return found


def selects(policy: dict[str, Any], deployment: dict[str, Any]) -> bool:
    wanted = policy["spec"]["podSelector"]["matchLabels"].items()
    return wanted <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_activator_admits_its_ports_per_chute_from_anywhere_and_metrics_from_prometheus(
    helm: Helm,
) -> None:
    objects = helm.template()
    policy = one(objects, "NetworkPolicy", ACTIVATOR)
    assert policy["metadata"]["namespace"] == "chutes-system"
    assert selects(policy, one(objects, "Deployment", ACTIVATOR))
    assert not selects(policy, operator_deployment(objects))
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert admitted(policy) == {("TCP", 20000): None, ("TCP", "metrics"): [PROMETHEUS]}
    per_chute = next(
        port for rule in policy["spec"]["ingress"] for port in rule["ports"] if port["port"] == 20000
    )
    assert per_chute["endPort"] == 29999  # the whole range: a Chute at zero reaches it on its own port
    ranged = helm.template(sets=("activator.chutePorts=21000-21099",))
    ports = [p for r in one(ranged, "NetworkPolicy", ACTIVATOR)["spec"]["ingress"] for p in r["ports"]]
    assert {"protocol": "TCP", "port": 21000, "endPort": 21099} in ports
    assert let_out(policy) == {**BASE_EGRESS, ("TCP", SIDECAR_PORT): CHUTES}  # it forwards there


def test_the_operator_admits_its_ports_from_prometheus_and_the_metrics_api_from_anywhere(helm: Helm) -> None:
    objects = helm.template()
    policy = one(objects, "NetworkPolicy", OPERATOR)
    assert selects(policy, operator_deployment(objects))
    assert not selects(policy, one(objects, "Deployment", ACTIVATOR))
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert admitted(policy) == {
        ("TCP", "health"): [PROMETHEUS],
        ("TCP", "metrics"): [PROMETHEUS],
        ("TCP", "metrics-api"): None,  # the API server, which is not a pod
    }
    assert let_out(policy) == {**BASE_EGRESS, ("TCP", METRICS_PORT): CHUTES}  # the metrics API reads them


def test_without_the_metrics_api_the_operator_admits_no_https_port(helm: Helm) -> None:
    policy = one(helm.template(sets=("metricsApi.enabled=false",)), "NetworkPolicy", OPERATOR)
    assert ("TCP", "metrics-api") not in admitted(policy)


def test_with_watched_namespaces_the_operator_reaches_sidecars_there_only(helm: Helm) -> None:
    objects = helm.template(sets=("watchNamespaces={team-a,team-b}",))
    for name, port in ((OPERATOR, METRICS_PORT), (ACTIVATOR, SIDECAR_PORT)):
        (peer,) = let_out(one(objects, "NetworkPolicy", name))[("TCP", port)] or []
        watched = {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        assert peer["namespaceSelector"] == {"matchExpressions": [watched]}


def test_the_peers_follow_the_chutes_network_policy_values(helm: Helm) -> None:
    objects = helm.template(
        sets=(
            "chuteNetworkPolicy.prometheus.namespaceSelector.team=obs",
            "chuteNetworkPolicy.dns.podSelector.k8s-app=coredns",
        )
    )
    policy = one(objects, "NetworkPolicy", ACTIVATOR)
    (prometheus,) = admitted(policy)[("TCP", "metrics")] or []
    assert prometheus["namespaceSelector"]["matchLabels"]["team"] == "obs"
    (dns,) = let_out(policy)[("UDP", 53)] or []
    assert dns["podSelector"]["matchLabels"] == {"k8s-app": "coredns"}


def test_network_policies_can_be_turned_off(helm: Helm) -> None:
    assert find(helm.template(sets=("networkPolicy.enabled=false",)), "NetworkPolicy") == []
    off = helm.template(sets=("activator.enabled=false",))
    assert [p["metadata"]["name"] for p in find(off, "NetworkPolicy")] == [OPERATOR]


def test_the_network_policies_render_the_same_every_time(helm: Helm) -> None:
    def policies() -> str:
        return yaml.safe_dump(find(helm.template(), "NetworkPolicy"))

    assert policies() == policies()
