"""The Chute's NetworkPolicy: ingress only to the serving port (metrics from Prometheus), egress DNS only."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from chute_operator.api import TEMPLATES
from chute_operator.engines import ENGINES
from chute_operator.gpus import builtin_catalog
from chute_operator.render import render
from chute_operator.settings import Settings
from chute_operator.wiring import PeerSelector
from chute_operator.workload import RenderOptions
from chute_shared.ports import METRICS_PORT, METRICS_PORT_NAME, SERVING_PORT_NAME, SIDECAR_PORT
from tests.unit.chute_operator.test_render import KUBERNETES_VERSION, _chute

OPTIONS = RenderOptions(catalog=builtin_catalog())
KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def _policy(options: RenderOptions = OPTIONS, **spec: Any) -> dict[str, Any]:
    policy = next(m for m in render(_chute(**spec), options) if m["kind"] == "NetworkPolicy")
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    return policy["spec"]


def _ports(rule: dict[str, Any]) -> list[Any]:
    return [port["port"] for port in rule["ports"]]


def test_ingress_admits_the_serving_port_from_anywhere_and_metrics_from_prometheus_only() -> None:
    spec = _policy()
    assert spec["podSelector"] == {"matchLabels": {"chutes.ai/chute": "invalid"}}
    assert "Ingress" in spec["policyTypes"]
    serving, metrics = spec["ingress"]
    assert (_ports(serving), "from" in serving) == ([SIDECAR_PORT], False)
    assert (_ports(metrics), metrics["from"]) == ([METRICS_PORT], [PROMETHEUS])


def test_no_other_port_is_admitted_neither_the_model_nor_the_admin_port() -> None:
    for template in TEMPLATES:
        spec = _policy(template=template, model={"name": "org/model"})
        admitted = {port for rule in spec["ingress"] for port in _ports(rule)}
        assert admitted == {SIDECAR_PORT, METRICS_PORT}, template


def test_egress_is_dns_to_the_cluster_dns_pods_only() -> None:
    spec = _policy()
    assert "Egress" in spec["policyTypes"]
    assert spec["egress"] == [
        {"to": [KUBE_DNS], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    ]


def test_allowed_egress_adds_exactly_those_in_cluster_destinations() -> None:
    mirror = {"namespace": "mirrors", "podSelector": {"app": "hf-mirror"}, "ports": [8080, 8443]}
    spec = _policy(allowedEgress=[mirror, {"namespace": "vectors", "protocol": "UDP"}])
    assert spec["egress"][1:] == [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mirrors"}},
                    "podSelector": {"matchLabels": {"app": "hf-mirror"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 8443}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vectors"}},
                    "podSelector": {},
                }
            ]
        },
    ]


def test_external_egress_opens_egress_and_keeps_ingress_governed() -> None:
    spec = _policy(allowExternalEgress=True)
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec
    assert [_ports(rule) for rule in spec["ingress"]] == [[SIDECAR_PORT], [METRICS_PORT]]


def test_dns_and_metrics_readers_come_from_the_options() -> None:
    options = RenderOptions(
        catalog=builtin_catalog(),
        dns=PeerSelector({"kubernetes.io/metadata.name": "dns"}, {"app": "coredns"}),
        metrics_readers=(PeerSelector({}, {"app": "prometheus"}), PeerSelector({"team": "ops"}, {})),
    )
    spec = _policy(options)
    assert spec["egress"][0]["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns"}},
            "podSelector": {"matchLabels": {"app": "coredns"}},
        }
    ]
    assert spec["ingress"][1]["from"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "prometheus"}}},
        {"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": {}},
    ]


def test_settings_read_the_selectors_and_add_the_operator_when_it_serves_the_metrics_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings.from_env()
    assert defaults.dns_peer() == PeerSelector(
        {"kubernetes.io/metadata.name": "kube-system"}, {"k8s-app": "kube-dns"}
    )
    assert defaults.metrics_readers() == (
        PeerSelector({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"}),
    )
    for name, value in {
        "CHUTE_OPERATOR_DNS_NAMESPACE_SELECTOR": "kubernetes.io/metadata.name=dns",
        "CHUTE_OPERATOR_DNS_POD_SELECTOR": "app=coredns, tier=node",
        "CHUTE_OPERATOR_PROMETHEUS_NAMESPACE_SELECTOR": "",
        "CHUTE_OPERATOR_PROMETHEUS_POD_SELECTOR": "app=prometheus",
        "CHUTE_OPERATOR_METRICS_API": "true",
        "CHUTE_OPERATOR_OPERATOR_POD_SELECTOR": "app.kubernetes.io/name=chute-operator",
        "POD_NAMESPACE": "chutes-system",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert settings.dns_peer() == PeerSelector(
        {"kubernetes.io/metadata.name": "dns"}, {"app": "coredns", "tier": "node"}
    )
    assert settings.metrics_readers() == (
        PeerSelector({}, {"app": "prometheus"}),
        PeerSelector(
            {"kubernetes.io/metadata.name": "chutes-system"}, {"app.kubernetes.io/name": "chute-operator"}
        ),
    )
    monkeypatch.setenv("CHUTE_OPERATOR_DNS_POD_SELECTOR", "k8s-app")
    with pytest.raises(ValueError, match="CHUTE_OPERATOR_DNS_POD_SELECTOR"):
        Settings.from_env()


def test_every_template_that_takes_a_host_binds_the_model_to_loopback() -> None:
    for name in ("vllm", "sglang", "tei", "embedding"):
        args = ENGINES[name].args(_chute(template=name).spec, 8000)
        host_flag = next(a for a in args if a in ("--host", "--hostname"))
        assert args[args.index(host_flag) + 1] == "127.0.0.1", name
    for name in ("custom", "diffusion"):  # the image's own command: the NetworkPolicy closes its port
        assert ENGINES[name].args(_chute(template=name).spec, 8000) == []


def test_the_admitted_ports_are_the_sidecars_serving_and_metrics_ports_by_number() -> None:
    """By number: the sidecar is a native sidecar (an init container), and not every network plugin
    resolves a named port there (kube-network-policies v0.8.0 looks in ``containers`` only, so a named
    port would admit nothing: tests/realnode/test_network_policy_on_real_pods.py found it)."""
    manifests = {m["kind"]: m for m in render(_chute(), OPTIONS)}
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    sidecar_ports = {port["name"]: port["containerPort"] for port in pod["initContainers"][0]["ports"]}
    admitted = {port for rule in manifests["NetworkPolicy"]["spec"]["ingress"] for port in _ports(rule)}
    assert admitted == {sidecar_ports[SERVING_PORT_NAME], sidecar_ports[METRICS_PORT_NAME]}
    service_targets = {port["targetPort"] for port in manifests["Service"]["spec"]["ports"]}
    assert {sidecar_ports[name] for name in service_targets} == admitted
