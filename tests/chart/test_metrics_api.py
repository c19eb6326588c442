"""The chart's custom metrics API: APIService, Service, serving certificate (the operator's, cert-manager's
or your own), RBAC, and the switch."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.chart.helm import (
    CHART,
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


def test_by_default_the_operator_makes_its_certificate_and_the_chart_renders_no_key(helm: Helm) -> None:
    """No Secret, no caBundle: the operator makes the certificate in Secret <fullname>-metrics-api-tls
    (metricsapi/certkeeper.py), serves it and writes the APIService's caBundle itself."""
    objects = helm.template()
    container = operator_container(objects)
    env = env_of(container)
    assert env["CHUTE_OPERATOR_METRICS_API"] == "true"
    assert env["CHUTE_OPERATOR_METRICS_API_PORT"] == "6443"
    assert env["CHUTE_OPERATOR_METRICS_API_CERT_SECRET"] == f"{SERVICE}-tls"
    assert env["CHUTE_OPERATOR_METRICS_API_SERVICE"] == SERVICE
    assert env["CHUTE_OPERATOR_METRICS_API_CERT_VALIDITY_DAYS"] == "365"
    assert env["CHUTE_OPERATOR_METRICS_API_CERT_RENEW_BEFORE_DAYS"] == "30"
    assert "CHUTE_OPERATOR_METRICS_API_CERT_FILE" not in env
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}  # the Secret's namespace
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics-api"] == 6443
    assert not [m for m in container["volumeMounts"] if m["mountPath"] == MOUNT]
    assert not find(objects, "Secret")
    assert not find(objects, "Certificate")
    api = one(objects, "APIService")
    assert "caBundle" not in api["spec"]
    assert "annotations" not in api["metadata"]


def test_the_operator_may_read_make_and_renew_that_one_secret_and_write_that_one_apiservice(
    helm: Helm,
) -> None:
    objects = helm.template()
    role = one(objects, "Role", f"{SERVICE}-cert")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{SERVICE}-tls"],
            "verbs": ["get", "update"],
        },
    ]
    binding = one(objects, "RoleBinding", f"{SERVICE}-cert")
    assert binding["roleRef"]["name"] == f"{SERVICE}-cert"
    sa = operator_service_account(objects)["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    rules = one(objects, "ClusterRole", "co-chute-operator-metrics-api")["rules"]
    assert {
        "apiGroups": ["apiregistration.k8s.io"],
        "resources": ["apiservices"],
        "resourceNames": ["v1beta2.custom.metrics.k8s.io"],
        "verbs": ["get", "patch"],
    } in rules


def test_bring_your_own_certificate(helm: Helm) -> None:
    bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...\n").decode()
    objects = helm.template(
        sets=("metricsApi.tls.existingSecret=my-tls", f"metricsApi.tls.caBundle={bundle}")
    )
    assert not find(objects, "Secret")
    assert one(objects, "APIService")["spec"]["caBundle"] == bundle
    mounted_secret(objects, "my-tls")
    assert not find(objects, "Role", f"{SERVICE}-cert")
    rules = one(objects, "ClusterRole", "co-chute-operator-metrics-api")["rules"]
    assert not [r for r in rules if "patch" in r["verbs"]]  # the APIService's caBundle is the chart's
    assert {r["resources"][0] for r in rules} == {"nodes", "apiservices", "*"}  # read, forward
    error = helm.template_error("metricsApi.tls.existingSecret=my-tls")
    assert "metricsApi.tls.caBundle" in error


def mounted_secret(objects: list[dict[str, Any]], name: str) -> None:
    """The operator serves the files of Secret ``name``, mounted, and makes no certificate itself."""
    container = operator_container(objects)
    env = env_of(container)
    assert env["CHUTE_OPERATOR_METRICS_API_CERT_SECRET"] == ""
    assert env["CHUTE_OPERATOR_METRICS_API_CERT_FILE"] == f"{MOUNT}/tls.crt"
    assert env["CHUTE_OPERATOR_METRICS_API_KEY_FILE"] == f"{MOUNT}/tls.key"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == MOUNT)
    volumes = {v["name"]: v for v in operator_deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["secret"]["secretName"] == name


def test_cert_manager_issues_it_and_injects_the_ca(helm: Helm) -> None:
    """Rendered only: not run against a real cert-manager here."""
    objects = helm.template(sets=("metricsApi.certManager.enabled=true",))
    api = one(objects, "APIService")
    assert api["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/{SERVICE}"}
    assert "caBundle" not in api["spec"]
    serving = one(objects, "Certificate", SERVICE)
    assert serving["spec"]["secretName"] == f"{SERVICE}-tls"
    assert serving["spec"]["dnsNames"] == [
        SERVICE,
        f"{SERVICE}.{NAMESPACE}",
        f"{SERVICE}.{NAMESPACE}.svc",
        f"{SERVICE}.{NAMESPACE}.svc.cluster.local",
    ]
    assert (serving["spec"]["duration"], serving["spec"]["renewBefore"]) == ("8760h", "720h")
    assert serving["spec"]["usages"] == ["server auth", "digital signature"]
    assert serving["spec"]["issuerRef"] == {
        "name": f"{SERVICE}-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    ca = one(objects, "Certificate", f"{SERVICE}-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"]["name"] == f"{SERVICE}-selfsigned"
    assert one(objects, "Issuer", f"{SERVICE}-selfsigned")["spec"] == {"selfSigned": {}}
    assert one(objects, "Issuer", f"{SERVICE}-ca")["spec"] == {"ca": {"secretName": f"{SERVICE}-ca"}}
    mounted_secret(objects, f"{SERVICE}-tls")
    assert not find(objects, "Role", f"{SERVICE}-cert")

    theirs = helm.template(
        sets=(
            "metricsApi.certManager.enabled=true",
            "metricsApi.certManager.issuerRef.name=corp-ca",
            "metricsApi.certManager.issuerRef.kind=ClusterIssuer",
        )
    )
    assert [c["metadata"]["name"] for c in find(theirs, "Certificate")] == [SERVICE]
    assert not find(theirs, "Issuer")
    assert one(theirs, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (
            (
                "metricsApi.certManager.enabled=true",
                "metricsApi.tls.existingSecret=x",
                "metricsApi.tls.caBundle=LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==",
            ),
            "choose one",
        ),
        (("metricsApi.tls.renewBeforeDays=365",), "renewBeforeDays must be less"),
    ],
)
def test_contradictory_certificate_values_are_refused(helm: Helm, sets: tuple[str, ...], says: str) -> None:
    assert says in helm.template_error(*sets)


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
    assert nodes["rules"][0] == {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}
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
    assert not [n for n in names if "auth-delegator" in n or "auth-reader" in n or "-metrics-api" in n]
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
    objects = helm.template(
        sets=("watchNamespaces={team-a}", "rbac.clusterDiscovery=false", "gpu.profile=gke")
    )  # (gpu.profile=auto adds its node list: tests/chart/test_gpu_profile_values.py)
    assert {r["metadata"]["name"] for r in find(objects, "ClusterRole")} == {"co-chute-operator-metrics-api"}
    assert {b["metadata"]["name"] for b in find(objects, "ClusterRoleBinding")} == {
        "co-chute-operator-auth-delegator",
        "co-chute-operator-metrics-api",
    }


FORWARDING_RULE = {"apiGroups": ["custom.metrics.k8s.io"], "resources": ["*"], "verbs": ["get", "list"]}
APISERVICES_READ = {
    "apiGroups": ["apiregistration.k8s.io"],
    "resources": ["apiservices"],
    "resourceNames": ["v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"],
    "verbs": ["get"],
}


@pytest.mark.parametrize("sets", [(), ("metricsApi.certManager.enabled=true",)])
def test_by_default_the_operator_may_forward_to_the_adapter_behind_v1beta1(
    helm: Helm, sets: tuple[str, ...]
) -> None:
    """It reads both APIServices (which adapter is behind v1beta1; whether v1beta2 is its own) and
    reads custom metrics through the kube-apiserver; the setting reaches it."""
    objects = helm.template(sets=sets)
    rules = one(objects, "ClusterRole", "co-chute-operator-metrics-api")["rules"]
    assert FORWARDING_RULE in rules
    assert APISERVICES_READ in rules
    assert env_of(operator_container(objects))["CHUTE_OPERATOR_METRICS_API_FORWARD_TO_V1BETA1"] == "true"


def test_forwarding_off_takes_its_grant_away(helm: Helm) -> None:
    objects = helm.template(sets=("metricsApi.forwardToV1beta1=false",))
    rules = one(objects, "ClusterRole", "co-chute-operator-metrics-api")["rules"]
    assert FORWARDING_RULE not in rules
    assert not [r for r in rules if "custom.metrics.k8s.io" in r["apiGroups"]]
    assert env_of(operator_container(objects))["CHUTE_OPERATOR_METRICS_API_FORWARD_TO_V1BETA1"] == "false"


def test_the_check_for_another_adapters_v1beta2_reads_the_cluster_only_at_install(helm: Helm) -> None:
    """`lookup` finds nothing under `helm template`: the chart renders (the same text every time,
    tests/chart/test_reproducible.py); the refusal itself is checked against a real API server in
    tests/integration/test_metrics_api_coexist.py."""
    template = (CHART / "templates" / "metrics-api.yaml").read_text()
    assert 'lookup "apiregistration.k8s.io/v1" "APIService" "" "v1beta2.custom.metrics.k8s.io"' in template
    assert one(helm.template(), "APIService", "v1beta2.custom.metrics.k8s.io")
