"""The chart rendered offline: lint, the Deployment's hardening, RBAC scope, HA, image and GPU catalog."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chute_devcluster.binaries import HELM_KUBERNETES_MINOR, HELM_VERSION, OLDEST_KUBERNETES_VERSION
from chute_operator.gpu_profiles import load_profiles
from chute_operator.gpus import load_catalog
from chute_operator.version import IMAGE, IMAGE_REPOSITORY, SIDECAR_IMAGE, SIDECAR_TAG, VERSION
from chute_shared.cluster import WAKE_ANNOTATION
from tests.chart.helm import (
    CHART,
    CI_VALUES,
    ROOT,
    Helm,
    env_of,
    find,
    one,
    operator_container,
    operator_deployment,
    operator_service_account,
)

CI_IDS = [path.stem for path in CI_VALUES]
AUTH_READER = "extension-apiserver-authentication-reader"
READ = {"get", "list", "watch"}
APPLY = READ | {"create", "patch", "delete"}


def rules_by_resource(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, merged over the role's rules (rules limited by name excluded)."""
    merged: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        if rule.get("resourceNames"):
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                merged.setdefault((group, resource), set()).update(rule["verbs"])
    return merged


def test_ci_values_files_exist() -> None:
    assert {"default-values", "namespaced-values", "ha-monitoring-values"} <= set(CI_IDS)


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["no-values", *CI_IDS])
def test_helm_lint_strict(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    result = helm.run(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_every_object_is_namespaced_to_the_release_or_a_watched_namespace(helm: Helm, values: Path) -> None:
    objects = helm.template(values, namespace="ops")
    watched = set(yaml.safe_load(values.read_text()).get("watchNamespaces") or [])
    cluster_scoped = {
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "APIService",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, obj["metadata"]["name"]
        elif obj["kind"] in ("Role", "RoleBinding") and obj["metadata"]["namespace"] in watched:
            continue
        elif obj["kind"] == "RoleBinding" and obj["roleRef"]["name"] == AUTH_READER:
            assert namespace == "kube-system"  # where the front proxy's CA is published
        else:
            assert namespace == "ops", f"{obj['kind']} {obj['metadata']['name']} is in {namespace}"


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_operator_pod_is_restricted(helm: Helm, values: Path) -> None:
    objects = helm.template(values)
    pod = operator_deployment(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_probes_ports_and_downward_api(helm: Helm, values: Path) -> None:
    container = operator_container(helm.template(values))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081, "metrics-api": 6443}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    env = env_of(container)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["CHUTE_OPERATOR_HEALTH_PORT"] == "8080"
    assert env["CHUTE_OPERATOR_METRICS_PORT"] == "8081"
    assert container["args"] == ["run"]
    assert set(container["resources"]) >= {"requests", "limits"}


def test_operator_settings_reach_the_environment(helm: Helm) -> None:
    objects = helm.template(
        sets=(
            "operator.logLevel=DEBUG",
            "operator.logFormat=text",
            "operator.workers=7",
            "operator.sidecarImage=registry.example.com/sidecar:1.2.3",
            "watchNamespaces={a,b}",
        )
    )
    env = env_of(operator_container(objects))
    assert env["CHUTE_OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert env["CHUTE_OPERATOR_LOG_FORMAT"] == "text"
    assert env["CHUTE_OPERATOR_WORKERS"] == "7"
    assert env["CHUTE_OPERATOR_SIDECAR_IMAGE"] == "registry.example.com/sidecar:1.2.3"
    assert env["CHUTE_OPERATOR_NAMESPACES"] == "a,b"


def test_helm_reports_its_release_and_assumes_its_kubernetes(helm: Helm, tmp_path: Path) -> None:
    """Built with the release's version flags: a plain `helm template` passes the chart's kubeVersion."""
    version = helm.run("version", "--template", "{{.Version}} {{.GitTreeState}}").stdout
    assert version == f"{HELM_VERSION} clean"
    probe = tmp_path / "probe"
    (probe / "templates").mkdir(parents=True)
    (probe / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.0.1\n")
    (probe / "templates" / "kube.yaml").write_text("kube: {{ .Capabilities.KubeVersion.Version }}\n")
    rendered = yaml.safe_load(helm.run("template", "probe", str(probe)).stdout)
    assert rendered == {"kube": f"v1.{HELM_KUBERNETES_MINOR}.0"}
    assert helm.run("template", "co", str(CHART)).returncode == 0


def test_kubernetes_older_than_the_oldest_tested_is_refused(helm: Helm) -> None:
    """kubeVersion is the oldest minor the suites run against (binaries.OLDEST_KUBERNETES_VERSION)."""
    oldest = OLDEST_KUBERNETES_VERSION.rsplit(".", 1)[0]
    older = f"v1.{int(oldest.split('.')[1]) - 1}.9"
    refused = helm.run("template", "co", str(CHART), "--kube-version", older, check=False)
    assert refused.returncode != 0
    assert "kubeVersion" in refused.stderr
    assert helm.run("template", "co", str(CHART), "--kube-version", f"{oldest}.0").returncode == 0


def test_chute_network_policy_peers_reach_the_environment(helm: Helm) -> None:
    env = env_of(operator_container(helm.template()))
    assert env["CHUTE_OPERATOR_DNS_NAMESPACE_SELECTOR"] == "kubernetes.io/metadata.name=kube-system"
    assert env["CHUTE_OPERATOR_DNS_POD_SELECTOR"] == "k8s-app=kube-dns"
    assert env["CHUTE_OPERATOR_PROMETHEUS_NAMESPACE_SELECTOR"] == "kubernetes.io/metadata.name=monitoring"
    assert env["CHUTE_OPERATOR_PROMETHEUS_POD_SELECTOR"] == "app.kubernetes.io/name=prometheus"
    assert env["CHUTE_OPERATOR_OPERATOR_POD_SELECTOR"] == (
        "app.kubernetes.io/instance=co,app.kubernetes.io/name=chute-operator"
    )
    objects = helm.template(
        sets=(
            "chuteNetworkPolicy.dns.namespaceSelector=null",
            "chuteNetworkPolicy.dns.podSelector.app=coredns",
            "chuteNetworkPolicy.prometheus.namespaceSelector.team=ops",
        )
    )
    env = env_of(operator_container(objects))
    assert env["CHUTE_OPERATOR_DNS_NAMESPACE_SELECTOR"] == ""
    assert env["CHUTE_OPERATOR_DNS_POD_SELECTOR"] == "app=coredns,k8s-app=kube-dns"
    assert env["CHUTE_OPERATOR_PROMETHEUS_NAMESPACE_SELECTOR"] == (
        "kubernetes.io/metadata.name=monitoring,team=ops"
    )


def test_image_defaults_to_the_released_image_and_sidecar_to_its_own_tag(helm: Helm) -> None:
    """The chart's default is the image this version's release publishes, the operator's own default;
    the sidecar is that image under the sidecar's own tag, the operator's default too."""
    container = operator_container(helm.template())
    assert container["image"] == IMAGE == f"{IMAGE_REPOSITORY}:{VERSION}"
    env = env_of(container)
    assert env["CHUTE_OPERATOR_SIDECAR_IMAGE"] == SIDECAR_IMAGE == f"{IMAGE_REPOSITORY}:{SIDECAR_TAG}"
    assert env["CHUTE_OPERATOR_SIDECAR_UPDATE_POLICY"] == "Manual"
    assert env["CHUTE_OPERATOR_SIDECAR_MAX_CONCURRENT_UPDATES"] == "1"


def test_an_upgrade_changes_the_sidecar_image_only_when_the_sidecar_changed(helm: Helm) -> None:
    """Another chart version (another image tag) with the same sidecar renders the same sidecar image;
    another image repository moves the sidecar with it."""
    env = env_of(operator_container(helm.template(sets=("image.tag=9.9.9",))))
    assert env["CHUTE_OPERATOR_SIDECAR_IMAGE"] == SIDECAR_IMAGE
    env = env_of(operator_container(helm.template(sets=("image.repository=registry.example.com/co",))))
    assert env["CHUTE_OPERATOR_SIDECAR_IMAGE"] == f"registry.example.com/co:{SIDECAR_TAG}"


def test_the_sidecar_update_policy_and_pace_reach_the_operator(helm: Helm) -> None:
    sets = ("operator.sidecarUpdatePolicy=Automatic", "operator.sidecarMaxConcurrentUpdates=3")
    env = env_of(operator_container(helm.template(sets=sets)))
    assert env["CHUTE_OPERATOR_SIDECAR_UPDATE_POLICY"] == "Automatic"
    assert env["CHUTE_OPERATOR_SIDECAR_MAX_CONCURRENT_UPDATES"] == "3"
    assert "sidecarUpdatePolicy" in helm.template_error("operator.sidecarUpdatePolicy=Sometimes")
    assert "sidecarMaxConcurrentUpdates" in helm.template_error("operator.sidecarMaxConcurrentUpdates=0")


def test_image_digest_pins_operator_and_sidecar(helm: Helm) -> None:
    """A digest pins the sidecar too: the operator's image by digest (the chart cannot know the digest of
    the sidecar's tag; operator.sidecarImage pins that one instead)."""
    digest = "sha256:" + "ab" * 32
    container = operator_container(helm.template(sets=("image.tag=1.2.3", f"image.digest={digest}")))
    assert container["image"] == f"{IMAGE_REPOSITORY}:1.2.3@{digest}"
    assert env_of(container)["CHUTE_OPERATOR_SIDECAR_IMAGE"] == container["image"]


SECRET_ROLES = ("co-chute-operator-drain-key", "co-chute-operator-metrics-api-cert")
"""The Roles that grant anything on Secrets: the drain key's, the metrics API certificate's."""
WILDCARD_RULES = {
    ("co-chute-operator-metrics-api", "custom.metrics.k8s.io"): {"resources": ["*"], "verbs": ["get", "list"]}
}
"""The one rule with a wildcard: forwarding reads custom metrics of any object and metric name (RBAC
has no ``pods/*``: a metric is a subresource whose name is the metric's), read-only and in that group
only (docs/autoscaling.md#beside-another-custom-metrics-adapter)."""


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_rbac_has_no_wildcards_and_secrets_only_for_the_drain_key_and_the_certificate(
    helm: Helm, values: Path
) -> None:
    roles = [o for o in helm.template(values) if o["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            allowed = WILDCARD_RULES.get((role["metadata"]["name"], *rule["apiGroups"]))
            if allowed is not None and len(rule["apiGroups"]) == 1:
                assert {"resources": rule["resources"], "verbs": rule["verbs"]} == allowed
                continue
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['kind']} {role['metadata']['name']}: {rule}"
            if role["metadata"]["name"] not in SECRET_ROLES:
                assert "secrets" not in rule["resources"]
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a}",)], ids=["cluster-wide", "namespaced"])
def test_the_operator_may_make_and_read_its_drain_key_secret_and_no_other(
    helm: Helm, sets: tuple[str, ...]
) -> None:
    """The drain key (operator/chute_operator/drainkey.py): get on that one Secret, in the release
    namespace only; create cannot be limited by name, so it may create any Secret there."""
    objects = helm.template(sets=sets, namespace="ops")
    name = "co-chute-operator-drain-key"
    assert env_of(operator_container(objects))["CHUTE_OPERATOR_DRAIN_KEY_SECRET"] == name
    role = one(objects, "Role", name)
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [name], "verbs": ["get"]},
    ]
    binding = one(objects, "RoleBinding", name)
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    account = operator_service_account(objects)["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ops"}]


def discovery_role(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = [r for r in find(objects, "ClusterRole") if r["metadata"]["name"].endswith("-discovery")]
    return found[0] if found else None


def gpu_profile_role(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = [r for r in find(objects, "ClusterRole") if r["metadata"]["name"].endswith("-gpu-profile")]
    return found[0] if found else None


def test_cluster_wide_by_default(helm: Helm) -> None:
    objects = helm.template(namespace="ops")
    cluster_role = one(objects, "ClusterRole", "co-chute-operator")
    binding = one(objects, "ClusterRoleBinding", "co-chute-operator")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    sa = operator_service_account(objects)["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "ops"}]
    assert operator_deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"] == sa
    rules = rules_by_resource(cluster_role)
    assert rules == {
        ("chutes.ai", "chutes"): READ,
        ("chutes.ai", "chutes/status"): {"patch"},
        ("apps", "deployments"): APPLY,
        ("", "services"): APPLY,
        ("autoscaling", "horizontalpodautoscalers"): APPLY,
        ("networking.k8s.io", "networkpolicies"): APPLY,
        ("discovery.k8s.io", "endpointslices"): APPLY,
        ("monitoring.coreos.com", "servicemonitors"): APPLY,
        ("networking.k8s.io", "ingresses"): APPLY,
        ("gateway.networking.k8s.io", "httproutes"): APPLY,
        ("inference.networking.k8s.io", "inferencepools"): APPLY,
        ("", "pods"): READ,
        ("", "pods/log"): {"get"},
        ("", "persistentvolumeclaims"): APPLY,
        ("batch", "jobs"): APPLY,
        ("", "events"): {"create", "patch"},
    }
    discovery = discovery_role(objects)
    assert discovery is not None
    assert rules_by_resource(discovery) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    nodes = gpu_profile_role(objects)  # gpu.profile=auto: its own ClusterRole
    assert nodes is not None
    assert rules_by_resource(nodes) == {("", "nodes"): {"list"}}
    # The only namespaced Roles are the leader-election, the drain-key and the metrics API
    # certificate's ones, in the release namespace.
    assert sorted((r["metadata"]["name"], r["metadata"]["namespace"]) for r in find(objects, "Role")) == [
        ("co-chute-operator-drain-key", "ops"),
        ("co-chute-operator-leader-election", "ops"),
        ("co-chute-operator-metrics-api-cert", "ops"),
    ]
    assert env_of(operator_container(objects))["CHUTE_OPERATOR_NAMESPACES"] == ""


def test_watch_namespaces_get_a_role_each_and_no_cluster_role(helm: Helm) -> None:
    # (The metrics API's own cluster-wide grants are checked in test_metrics_api.py.)
    objects = helm.template(
        sets=("watchNamespaces={team-a,team-b}", "metricsApi.enabled=false"), namespace="ops"
    )
    # The cluster-wide grants are read-only: discovery for kopf (CRDs and namespaces) and the GPU
    # profile's auto pick (nodes), each its own ClusterRole.
    cluster_role, nodes = discovery_role(objects), gpu_profile_role(objects)
    assert cluster_role is not None
    assert nodes is not None
    assert len(find(objects, "ClusterRole")) == 2
    assert rules_by_resource(cluster_role) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }
    assert rules_by_resource(nodes) == {("", "nodes"): {"list"}}
    bound = {b["roleRef"]["name"] for b in find(objects, "ClusterRoleBinding")}
    assert bound == {cluster_role["metadata"]["name"], nodes["metadata"]["name"]}
    roles = {
        r["metadata"]["namespace"]: r
        for r in find(objects, "Role")
        if not r["metadata"]["name"].endswith(("-leader-election", "-drain-key"))
        and "-activator" not in r["metadata"]["name"]
    }
    assert set(roles) == {"team-a", "team-b"}
    bindings = {
        b["metadata"]["namespace"]: b
        for b in find(objects, "RoleBinding")
        if not b["metadata"]["name"].endswith(("-leader-election", "-drain-key"))
        and "-activator" not in b["metadata"]["name"]
    }
    for namespace, role in roles.items():
        assert bindings[namespace]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert bindings[namespace]["subjects"][0]["namespace"] == "ops"
        assert ("chutes.ai", "chutes") in rules_by_resource(role)


def test_cluster_discovery_can_be_turned_off(helm: Helm) -> None:
    objects = helm.template(
        sets=(
            "watchNamespaces={team-a}",
            "rbac.clusterDiscovery=false",
            "metricsApi.enabled=false",
            "gpu.profile=gke",
        )
    )
    assert not find(objects, "ClusterRole")
    assert not find(objects, "ClusterRoleBinding")
    assert discovery_role(helm.template(sets=("rbac.clusterDiscovery=false",))) is None


def test_no_rbac_objects_without_rbac_create(helm: Helm) -> None:
    kinds = {o["kind"] for o in helm.template(sets=("rbac.create=false",))}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def test_leader_election_role_is_limited_to_the_lease(helm: Helm) -> None:
    objects = helm.template(sets=("leaderElection.leaseName=my-lease",), namespace="ops")
    env = env_of(operator_container(objects))
    assert env["CHUTE_OPERATOR_LEADER_ELECTION"] == "true"
    assert env["CHUTE_OPERATOR_LEASE_NAME"] == "my-lease"
    assert env["CHUTE_OPERATOR_LEASE_NAMESPACE"] == "ops"
    role = next(r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-leader-election"))
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["my-lease"],
            "verbs": ["get", "update"],
        },
    ]


def test_without_leader_election_there_is_no_lease_role(helm: Helm) -> None:
    objects = helm.template(sets=("leaderElection.enabled=false",))
    assert not [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert env_of(operator_container(objects))["CHUTE_OPERATOR_LEADER_ELECTION"] == "false"


def test_ha_has_replicas_pdb_and_spreading(helm: Helm) -> None:
    values = CHART / "ci" / "ha-monitoring-values.yaml"
    objects = helm.template(values)
    deployment = operator_deployment(objects)
    assert deployment["spec"]["replicas"] == 3
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"][
        "topologyKey"
    ] == ("kubernetes.io/hostname")


def test_single_replica_has_no_pdb(helm: Helm) -> None:
    assert not find(helm.template(), "PodDisruptionBudget")


def test_replicas_without_leader_election_are_refused(helm: Helm) -> None:
    error = helm.template_error("replicaCount=2", "leaderElection.enabled=false")
    assert "leaderElection.enabled" in error


def test_monitoring_objects_are_off_by_default(helm: Helm) -> None:
    kinds = {o["kind"] for o in helm.template()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert not [
        o for o in find(helm.template(), "ConfigMap") if "grafana_dashboard" in o["metadata"]["labels"]
    ]


def test_service_monitor_selects_the_metrics_service(helm: Helm) -> None:
    objects = helm.template(sets=("metrics.serviceMonitor.enabled=true",), namespace="ops")
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service", "co-chute-operator-metrics")
    labels = service["metadata"]["labels"]
    metrics_api = one(objects, "Service", "co-chute-operator-metrics-api")["metadata"]["labels"]
    assert not all(metrics_api.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    pod_labels = operator_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_gpu_catalog_configmap_is_mounted_and_loads(helm: Helm, tmp_path: Path) -> None:
    objects = helm.template(CHART / "ci" / "namespaced-values.yaml")
    container = operator_container(objects)
    path = env_of(container)["CHUTE_OPERATOR_GPU_CATALOG"]
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volumes = operator_deployment(objects)["spec"]["template"]["spec"]["volumes"]
    config_map_name = next(v for v in volumes if v["name"] == mount["name"])["configMap"]["name"]
    data = one(objects, "ConfigMap", config_map_name)["data"]
    key = path[len(mount["mountPath"]) + 1 :]
    catalog_file = tmp_path / key
    catalog_file.write_text(data[key])
    catalog = load_catalog(catalog_file)
    assert catalog["rtx_pro_4500"].vram_gb == 32
    assert "h100" in catalog  # the built-in catalog is extended, not replaced


def test_empty_gpu_catalog_loads(helm: Helm, tmp_path: Path) -> None:
    objects = helm.template()
    config_map = next(o for o in find(objects, "ConfigMap") if o["metadata"]["name"].endswith("-gpus"))
    (tmp_path / "gpus.yaml").write_text(config_map["data"]["gpus.yaml"])
    assert "h100" in load_catalog(tmp_path / "gpus.yaml")


def test_gpu_catalog_change_rolls_the_operator(helm: Helm) -> None:
    def checksum(*sets: str) -> str:
        deployment = operator_deployment(helm.template(sets=sets))
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/gpu-catalog"])

    extra = ("gpuCatalog.gpus[0].name=x", "gpuCatalog.gpus[0].vramGb=8", "gpuCatalog.gpus[0].products={X}")
    assert checksum() != checksum(*extra)


def test_crd_is_installed_by_default_and_kept(helm: Helm) -> None:
    crd = one(helm.template(), "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "chutes.chutes.ai"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Argo CD deletes neither on a sync without it (crds.install=false) nor with its Application
    assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false,Delete=false"


def test_crd_can_be_left_out(helm: Helm) -> None:
    assert not find(helm.template(sets=("crds.install=false",)), "CustomResourceDefinition")


def test_chart_crd_matches_crds_directory(helm: Helm) -> None:
    """The templated copy renders to crds/chute.yaml plus the keep annotations, nothing else."""
    rendered = one(helm.template(), "CustomResourceDefinition")
    source = yaml.safe_load((ROOT / "crds" / "chute.yaml").read_text())
    annotations = rendered["metadata"].pop("annotations")
    assert annotations == {
        "helm.sh/resource-policy": "keep",
        "argocd.argoproj.io/sync-options": "Prune=false,Delete=false",
    }
    assert rendered == source, (
        "charts/chute-operator/templates/crd.yaml drifted: run python charts/sync_crd.py"
    )


def test_chart_crd_text_is_in_sync() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "charts" / "sync_crd.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_sync_check_fails_on_a_stale_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift check itself can fail: a source with one more printer column is reported stale."""
    sys.path.insert(0, str(ROOT / "charts"))
    try:
        import sync_crd
    finally:
        sys.path.remove(str(ROOT / "charts"))
    changed = tmp_path / "chute.yaml"
    changed.write_text(sync_crd.SOURCE.read_text().replace("name: Age", "name: Created"))
    monkeypatch.setattr(sync_crd, "SOURCE", changed)
    assert sync_crd.main(["--check"]) == 1


def test_argocd_health_check_configmap_carries_the_lua_file_under_the_argocd_cm_key(helm: Helm) -> None:
    assert not [
        o for o in find(helm.template(), "ConfigMap") if o["metadata"]["name"].endswith("argocd-health")
    ]
    objects = helm.template(sets=("argocd.healthCheck.enabled=true",), release="chute-operator")
    health = one(objects, "ConfigMap", "chute-operator-argocd-health")
    script = (CHART / "files" / "argocd-health.lua").read_text()
    assert health["data"] == {"resource.customizations.health.chutes.ai_Chute": script.rstrip("\n")}


def test_the_activator_runs_two_replicas_with_its_service_and_least_rbac_and_can_be_turned_off(
    helm: Helm,
) -> None:
    objects = helm.template(namespace="ops")
    deployment = one(objects, "Deployment", "co-chute-operator-activator")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    (container,) = pod["containers"]
    assert container["image"] == operator_container(objects)["image"]  # the same image
    assert container["args"][0] == "activator"
    assert pod["serviceAccountName"] == "co-chute-operator-activator"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # its pods are not the operator's (the operator Deployment's selector must not match them)
    operator_selector = operator_deployment(objects)["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not operator_selector.items() <= labels.items()
    service = one(objects, "Service", "co-chute-operator-activator")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["name"] for p in service["spec"]["ports"]} == {"metrics"}  # requests come per Chute
    # the only write is the wake annotation on Chutes; pods (to ask a waking pod's sidecar) are
    # read, Services no longer (a request's Chute is its port's, never its Host's)
    assert rules_by_resource(one(objects, "ClusterRole", "co-chute-operator-activator")) == {
        ("chutes.ai", "chutes"): READ | {"patch"},
        ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
        ("", "pods"): {"list", "watch"},
    }
    assert (
        env_of(operator_container(objects))["CHUTE_OPERATOR_ACTIVATOR_SERVICE"]
        == "ops/co-chute-operator-activator"
    )

    off = helm.template(sets=("activator.enabled=false",))
    assert not [o for o in off if "activator" in o["metadata"]["name"]]
    assert "CHUTE_OPERATOR_ACTIVATOR_SERVICE" not in env_of(operator_container(off))


def test_the_activator_watches_only_the_watched_namespaces(helm: Helm) -> None:
    objects = helm.template(sets=("watchNamespaces={team-a}",), namespace="ops")
    deployment = one(objects, "Deployment", "co-chute-operator-activator")
    assert "--namespace=team-a" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert one(objects, "Role", "co-chute-operator-activator")["metadata"]["namespace"] == "team-a"
    endpoints = one(objects, "RoleBinding", "co-chute-operator-activator-endpoints")
    assert endpoints["metadata"]["namespace"] == "ops"  # the operator reads the activator's slices
    assert endpoints["subjects"][0]["name"] == operator_service_account(objects)["metadata"]["name"]


def test_the_activator_holds_bodies_up_to_its_bound_which_fits_its_memory_limit(helm: Helm) -> None:
    """The bound across requests (``--max-held-body-bytes``) is what bounds the activator's memory:
    at the default 128 MiB held its peak RSS measured 184 MiB (benchmarks/activator_body_memory.py)."""
    objects = helm.template()
    (container,) = one(objects, "Deployment", "co-chute-operator-activator")["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--max-held-body-bytes=134217728" in container["args"]
    assert container["resources"]["limits"]["memory"] == "256Mi"
    bigger = helm.template(sets=("activator.maxHeldBodyBytes=268435456",))
    (container,) = one(bigger, "Deployment", "co-chute-operator-activator")["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--max-held-body-bytes=268435456" in container["args"]


def test_the_activator_gives_a_stalled_body_back_after_its_timeout(helm: Helm) -> None:
    """A client that stops sending its body keeps none of the held-bytes budget past
    ``--body-timeout-seconds`` (found by the breaking pass): the chart sets it."""
    (container,) = one(helm.template(), "Deployment", "co-chute-operator-activator")["spec"]["template"][
        "spec"
    ]["containers"]
    assert "--body-timeout-seconds=120" in container["args"]


def test_the_activator_drains_after_sigterm_within_its_grace_period(helm: Helm) -> None:
    """A rollout: the activator stays listening (unready) through its drain, longer than the
    operator's 5 s check of its endpoints plus kube-proxy's sync, then forwarded requests get the
    shutdown timeout; the grace period covers both, so SIGKILL never cuts them."""
    pod = one(helm.template(), "Deployment", "co-chute-operator-activator")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--drain-seconds=15" in container["args"]
    assert "--shutdown-timeout-seconds=30" in container["args"]
    assert pod["terminationGracePeriodSeconds"] == 15 + 30 + 5
    longer = helm.template(sets=("activator.drainSeconds=20", "activator.shutdownTimeoutSeconds=60"))
    pod = one(longer, "Deployment", "co-chute-operator-activator")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 85


def test_an_admission_policy_limits_the_activators_chute_writes_to_the_wake_annotation(helm: Helm) -> None:
    """Its RBAC must grant ``patch`` on whole Chutes; the policy refuses every change of its but the
    wake annotation (tests/chart/test_activator_wake_policy.py tries them on a real API server)."""
    objects = helm.template(namespace="ops")
    name = "co-chute-operator-activator-wake-only"
    policy = one(objects, "ValidatingAdmissionPolicy", name)
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["chutes.ai"],
            "apiVersions": ["*"],
            "operations": ["UPDATE"],
            "resources": ["chutes", "chutes/status"],
        }
    ]
    (only,) = spec["matchConditions"]
    account = one(objects, "ServiceAccount", "co-chute-operator-activator")["metadata"]
    assert only["expression"] == (
        f"request.userInfo.username == 'system:serviceaccount:{account['namespace']}:{account['name']}'"
    )
    assert spec["validations"]
    for validation in spec["validations"]:
        assert validation["reason"] == "Forbidden"
        assert validation["message"].startswith("the activator may change only")
    assert WAKE_ANNOTATION in yaml.safe_dump(spec["variables"])
    binding = one(objects, "ValidatingAdmissionPolicyBinding", name)
    assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
    # the activator's RBAC writes no status, so the policy is not all that stands in the way
    assert ("chutes.ai", "chutes/status") not in rules_by_resource(
        one(objects, "ClusterRole", "co-chute-operator-activator")
    )

    for sets in (("activator.wakeOnlyPolicy.enabled=false",), ("activator.enabled=false",)):
        kinds = {o["kind"] for o in helm.template(sets=sets)}
        assert not kinds & {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}, sets


def test_the_gpu_profile_is_auto_by_default_and_may_list_nodes(helm: Helm) -> None:
    for sets in [(), ("watchNamespaces={team-a}",)]:
        objects = helm.template(sets=sets, namespace="ops")
        assert env_of(operator_container(objects))["CHUTE_OPERATOR_GPU_PROFILE"] == "auto"
        role = gpu_profile_role(objects)
        assert role is not None
        assert rules_by_resource(role) == {("", "nodes"): {"list"}}


def test_a_named_gpu_profile_reaches_the_operator_and_needs_no_nodes(helm: Helm) -> None:
    objects = helm.template(sets=("gpu.profile=gke",))
    assert env_of(operator_container(objects))["CHUTE_OPERATOR_GPU_PROFILE"] == "gke"
    role = discovery_role(objects)
    assert role is not None
    assert ("", "nodes") not in rules_by_resource(role)
    assert gpu_profile_role(objects) is None


def test_an_unknown_gpu_profile_is_refused(helm: Helm) -> None:
    assert "/gpu/profile" in helm.template_error("gpu.profile=azure")


def test_the_custom_gpu_profile_reaches_the_catalog_file(helm: Helm, tmp_path: Path) -> None:
    sets = (
        "gpu.profile=custom",
        "gpu.custom.label=example.com/gpu",
        "gpu.custom.gpus.h100_sxm={h100}",
        "gpu.custom.tolerations[0].key=example.com/dedicated",
        "gpu.custom.tolerations[0].operator=Exists",
        "gpu.custom.tolerations[0].effect=NoSchedule",
    )
    objects = helm.template(sets=sets)
    config_map = next(o for o in find(objects, "ConfigMap") if o["metadata"]["name"].endswith("-gpus"))
    (tmp_path / "gpus.yaml").write_text(config_map["data"]["gpus.yaml"])
    custom = load_profiles(tmp_path / "gpus.yaml")["custom"]
    assert custom.label == "example.com/gpu"
    assert custom.values["h100_sxm"] == ((("", "h100"),),)
    assert custom.tolerations == (
        {"key": "example.com/dedicated", "operator": "Exists", "effect": "NoSchedule"},
    )
    assert env_of(operator_container(objects))["CHUTE_OPERATOR_GPU_PROFILE"] == "custom"
