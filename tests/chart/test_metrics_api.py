"""The chart's custom metrics API: APIService, Service, serving certificate, RBAC, and the switch."""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import (
    Helm,
    env_of,
    find,
    one,
    operator_container,
    operator_deployment,
    operator_service_account,
)

SERVICE = "co-chute-operator-metrics-api"
NAMESPACE = "chutes-system"
MOUNT = "/var/run/secrets/chute-operator/metrics-api"


def test_apiservice_points_at_the_service_of_every_replica(helm: Helm) -> None:
    objects = helm.template(sets=("replicaCount=3",))
    api = one(objects, "APIService")
    assert api["metadata"]["name"] == "v1beta2.custom.metrics.k8s.io"
    assert (api["spec"]["group"], api["spec"]["version"]) == ("custom.metrics.k8s.io", "v1beta2")
    assert api["spec"]["service"] == {"name": SERVICE, "namespace": NAMESPACE, "port": 443}
    assert "insecureSkipTLSVerify" not in api["spec"]
    service = one(objects, "Service", SERVICE)
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "metrics-api", "protocol": "TCP"}
    ]
    pod_labels = operator_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_every_replica_serves_it_with_the_mounted_certificate(helm: Helm) -> None:
    objects = helm.template()
    container = operator_container(objects)
    env = env_of(container)
    assert env["CHUTE_OPERATOR_METRICS_API"] == "true"
    assert env["CHUTE_OPERATOR_METRICS_API_PORT"] == "6443"
    assert env["CHUTE_OPERATOR_METRICS_API_CERT_FILE"] == f"{MOUNT}/tls.crt"
    assert env["CHUTE_OPERATOR_METRICS_API_KEY_FILE"] == f"{MOUNT}/tls.key"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics-api"] == 6443
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == MOUNT)
    volumes = {v["name"]: v for v in operator_deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["secret"]["secretName"] == f"{SERVICE}-tls"


def test_generated_certificate_is_signed_by_the_ca_bundle_for_the_service_name(
    helm: Helm, tmp_path: Path
) -> None:
    objects = helm.template()
    secret = one(objects, "Secret", f"{SERVICE}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca_bundle = one(objects, "APIService")["spec"]["caBundle"]
    assert secret["data"]["ca.crt"] == ca_bundle
    files = {}
    for name, data in (
        ("ca.crt", ca_bundle),
        ("tls.crt", secret["data"]["tls.crt"]),
        ("tls.key", secret["data"]["tls.key"]),
    ):
        files[name] = tmp_path / name
        files[name].write_bytes(base64.b64decode(data))
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(files["ca.crt"]), str(files["tls.crt"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    names = subprocess.run(
        ["openssl", "x509", "-in", str(files["tls.crt"]), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"DNS:{SERVICE}.{NAMESPACE}.svc" in names  # the name the kube-apiserver verifies
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files["tls.crt"]), str(files["tls.key"]))  # key matches


def test_bring_your_own_certificate(helm: Helm) -> None:
    bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...\n").decode()
    objects = helm.template(
        sets=("metricsApi.tls.existingSecret=my-tls", f"metricsApi.tls.caBundle={bundle}")
    )
    assert not find(objects, "Secret")
    assert one(objects, "APIService")["spec"]["caBundle"] == bundle
    volumes = operator_deployment(objects)["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("secret", {}).get("secretName") == "my-tls" for v in volumes)
    error = helm.template_error("metricsApi.tls.existingSecret=my-tls")
    assert "metricsApi.tls.caBundle" in error


def rule_names(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in objects}


def test_rbac_for_delegated_auth_and_node_lookups(helm: Helm) -> None:
    objects = helm.template()
    delegator = one(objects, "ClusterRoleBinding", "co-chute-operator-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = one(objects, "RoleBinding", "co-chute-operator-auth-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "extension-apiserver-authentication-reader",
    }
    nodes = one(objects, "ClusterRole", "co-chute-operator-metrics-api")
    assert nodes["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    binding = one(objects, "ClusterRoleBinding", "co-chute-operator-metrics-api")
    sa = operator_service_account(objects)["metadata"]["name"]
    for bound in (delegator, reader, binding):
        assert bound["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    # pods are already read (watched) by the operator's own rules, and HPAs too
    rules = one(objects, "ClusterRole", "co-chute-operator")["rules"]
    assert any("pods" in r["resources"] and "list" in r["verbs"] for r in rules)
    assert any("horizontalpodautoscalers" in r["resources"] and "get" in r["verbs"] for r in rules)


@pytest.mark.parametrize("extra", [(), ("rbac.create=false",)])
def test_turned_off_for_clusters_where_another_adapter_owns_the_api(
    helm: Helm, extra: tuple[str, ...]
) -> None:
    objects = helm.template(sets=("metricsApi.enabled=false", *extra))
    names = rule_names(objects)
    assert not find(objects, "APIService")
    assert not find(objects, "Secret")
    assert f"Service/{NAMESPACE}/{SERVICE}" not in names
    assert not [n for n in names if "auth-delegator" in n or "auth-reader" in n or n.endswith("-metrics-api")]
    container = operator_container(objects)
    assert env_of(container)["CHUTE_OPERATOR_METRICS_API"] == "false"
    assert "metrics-api" not in {p["name"] for p in container["ports"]}


def test_without_rbac_create_no_bindings_but_still_served(helm: Helm) -> None:
    objects = helm.template(sets=("rbac.create=false",))
    assert one(objects, "APIService")
    assert not find(objects, "RoleBinding")
    assert not find(objects, "ClusterRoleBinding")


def test_a_namespaced_install_still_needs_the_metrics_apis_cluster_wide_grants(helm: Helm) -> None:
    """An APIService is cluster-wide, and so are delegated auth and node lookups: documented."""
    objects = helm.template(sets=("watchNamespaces={team-a}", "rbac.clusterDiscovery=false"))
    assert {r["metadata"]["name"] for r in find(objects, "ClusterRole")} == {"co-chute-operator-metrics-api"}
    assert {b["metadata"]["name"] for b in find(objects, "ClusterRoleBinding")} == {
        "co-chute-operator-auth-delegator",
        "co-chute-operator-metrics-api",
    }
