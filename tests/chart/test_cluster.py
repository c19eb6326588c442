"""The chart on the real local control plane: server-side dry run, install, and the operator running
with nothing but the chart's ServiceAccount token (proof that its RBAC suffices and is not wider)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import chutes
from tests.chart.helm import (
    CHART,
    CI_VALUES,
    Helm,
    operator_container,
    operator_service_account,
)
from tests.kube_helpers import apply, condition, eventually, get, service_account_kubeconfig
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.integration

CI_IDS = [path.stem for path in CI_VALUES]
CRD_NAME = "chutes.chutes.ai"


def ensure_namespace(cp: Any, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))


@pytest.fixture
def other_namespace(control_plane: Any, namespace: str) -> Iterator[str]:
    """A second fresh namespace beside ``namespace``; deleted afterwards."""
    name = f"{namespace}-x"
    ensure_namespace(control_plane, name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_rendered_objects_pass_server_dry_run(
    helm: Helm, control_plane: Any, namespace: str, monitoring_crds: None, values: Path
) -> None:
    """Every object each ci/ values file renders is accepted by the API server (schema, admission),
    and the operator's pod template meets the `restricted` Pod Security Standard."""
    for watched in yaml.safe_load(values.read_text()).get("watchNamespaces") or []:
        ensure_namespace(control_plane, watched)
    control_plane.kubectl(
        "label", "--overwrite", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted"
    )
    objects = helm.template(values, namespace=namespace, release="dry")
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(objects), result.stdout
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "CustomResourceDefinition"} <= kinds


# -- install + run as the ServiceAccount ----------------------------------------------------------


@dataclass
class Release:
    name: str
    namespace: str
    objects: list[dict[str, Any]]

    @property
    def service_account(self) -> str:
        return str(operator_service_account(self.objects)["metadata"]["name"])

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def adopt_crd(cp: Any, release: str, namespace: str) -> None:
    """Let the release take over the CRD that other tests installed with kubectl (Helm's adoption)."""
    cp.kubectl(
        "annotate", "--overwrite", "crd", CRD_NAME,
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip
    cp.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")


@pytest.fixture
def install(helm: Helm, control_plane: Any, chute_crd: Path) -> Iterator[Any]:
    """install(name, namespace, *values, sets=()) -> Release; uninstalled afterwards."""
    installed: list[Release] = []
    cluster_helm = helm.with_kubeconfig(control_plane.kubeconfig)

    def _install(name: str, namespace: str, *values: Path, sets: tuple[str, ...] = ()) -> Release:
        adopt_crd(control_plane, name, namespace)
        # No APIService here: the kube-apiserver would dial its Service, whose pods are simulated.
        # tests/integration/test_metrics_api.py registers one on loopback instead.
        args = ["install", name, str(CHART), "-n", namespace, "--set", "image.tag=test"]
        args += ["--set", "metricsApi.enabled=false"]
        for path in values:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        notes = cluster_helm.run(*args).stdout
        assert f'is installed as release "{name}" in namespace "{namespace}"' in notes
        manifest = cluster_helm.run("get", "manifest", name, "-n", namespace).stdout
        release = Release(name, namespace, [doc for doc in yaml.safe_load_all(manifest) if doc])
        installed.append(release)
        return release

    yield _install
    for release in installed:
        cluster_helm.run("uninstall", release.name, "-n", release.namespace, "--wait", check=False)


def can_i(cp: Any, subject: str, verb: str, resource: str, *where: str) -> bool:
    """kubectl auth can-i; ``resource`` may end in ``:subresource`` (``/x`` would name an object)."""
    resource, _, subresource = resource.partition(":")
    extra = [f"--subresource={subresource}"] if subresource else []
    result = cp.kubectl("auth", "can-i", verb, resource, *extra, f"--as={subject}", *where, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def token_kubeconfig(cp: Any, release: Release, path: Path) -> Path:
    """A kubeconfig for the release's ServiceAccount: a fresh token, the admin kubeconfig's cluster."""
    return service_account_kubeconfig(cp, release.service_account, release.namespace, path)


class ChartOperator(OperatorProcess):
    """The operator as the chart's Deployment runs it: its args and environment, its GPU catalog
    file, a given kubeconfig (the ServiceAccount's token); free local ports for health and metrics."""

    def __init__(self, release: Release, kubeconfig: Path, work_dir: Path, pod_name: str) -> None:
        container = operator_container(release.objects)
        self.args = list(container["args"])
        env: dict[str, str] = {}
        for entry in container["env"]:
            if "value" in entry:
                env[entry["name"]] = entry["value"]
            else:
                field = entry["valueFrom"]["fieldRef"]["fieldPath"]
                env[entry["name"]] = {"metadata.name": pod_name, "metadata.namespace": release.namespace}[
                    field
                ]
        catalog = next(o for o in release.objects if o["kind"] == "ConfigMap" and "gpus.yaml" in o["data"])
        (work_dir / "gpus.yaml").write_text(catalog["data"]["gpus.yaml"])
        env["CHUTE_OPERATOR_GPU_CATALOG"] = str(work_dir / "gpus.yaml")
        for port in ("CHUTE_OPERATOR_HEALTH_PORT", "CHUTE_OPERATOR_METRICS_PORT"):
            env.pop(port)
        env["CHUTE_OPERATOR_LOG_FORMAT"] = "text"
        self.chart_env = env
        super().__init__(kubeconfig, work_dir, pod_name, **env)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "chute_operator", *self.args]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "CHUTE_OPERATOR_IDENTITY": self.identity,
            "CHUTE_OPERATOR_LEASE_DURATION_SECONDS": "6",
            "CHUTE_OPERATOR_LEASE_RENEW_SECONDS": "1",
            **self.chart_env,
        }

    def forbidden(self) -> list[str]:
        """Log lines that report a refusal by the API server."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "forbidden" in line.lower() or " 403" in line]


@pytest.fixture
def run_operator(tmp_path: Path) -> Iterator[Any]:
    started: list[ChartOperator] = []

    def _run(release: Release, kubeconfig: Path, pod_name: str) -> ChartOperator:
        operator = ChartOperator(release, kubeconfig, tmp_path, pod_name)
        started.append(operator)
        return operator.start()

    yield _run
    for operator in started:
        operator.stop()


def cpu_chute(name: str) -> dict[str, Any]:
    """A Chute that needs no GPU node, autoscaled (so it gets an HPA too)."""
    return chutes.cpu_chute(name, resources={"cpu": "1", "memory": "1Gi"})


def reconciled(cp: Any, name: str, namespace: str) -> dict[str, Any] | None:
    """The Chute once its status reports the current generation."""
    found = get(cp, "chute", name, namespace)
    if found and (found.get("status") or {}).get("observedGeneration") == found["metadata"]["generation"]:
        return found
    return None


NEEDED = [
    # (verb, resource) the operator uses in the namespaces it reconciles
    ("list", "chutes.chutes.ai"),
    ("watch", "chutes.chutes.ai"),
    ("patch", "chutes.chutes.ai:status"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("delete", "deployments.apps"),
    ("watch", "deployments.apps"),
    ("patch", "services"),
    ("patch", "horizontalpodautoscalers.autoscaling"),
    ("patch", "networkpolicies.networking.k8s.io"),
    ("list", "servicemonitors.monitoring.coreos.com"),
    ("delete", "servicemonitors.monitoring.coreos.com"),
    ("patch", "ingresses.networking.k8s.io"),
    ("delete", "ingresses.networking.k8s.io"),
    ("watch", "pods"),
    ("create", "events"),
]
REFUSED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "chutes.chutes.ai"),
    ("update", "chutes.chutes.ai"),
    ("patch", "chutes.chutes.ai"),
    ("delete", "chutes.chutes.ai"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods:exec"),
    ("update", "deployments.apps"),
    ("create", "configmaps"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts:token"),
]
REFUSED_CLUSTER = [
    ("delete", "namespaces"),
    ("create", "namespaces"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("patch", "nodes"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
]


def test_cluster_wide_install_reconciles_as_its_service_account(
    control_plane: Any,
    namespace: str,
    monitoring_crds: None,
    install: Any,
    run_operator: Any,
    helm: Helm,
    other_namespace: str,
    tmp_path: Path,
) -> None:
    release = install("co-wide", namespace, CHART / "ci" / "ha-monitoring-values.yaml")
    subject = release.subject
    apps = other_namespace
    cp = control_plane

    # What it needs, anywhere (ClusterRole); and the Lease only in its own namespace.
    for verb, resource in NEEDED:
        assert can_i(cp, subject, verb, resource, "-n", apps), f"cannot {verb} {resource}"
    assert can_i(cp, subject, "list", "chutes.chutes.ai", "--all-namespaces")
    env = {e["name"]: e.get("value") for e in operator_container(release.objects)["env"]}
    lease_name = env["CHUTE_OPERATOR_LEASE_NAME"]
    assert env["CHUTE_OPERATOR_LEASE_NAMESPACE"] == namespace
    assert can_i(cp, subject, "create", "leases.coordination.k8s.io", "-n", namespace)
    assert can_i(cp, subject, "update", f"leases.coordination.k8s.io/{lease_name}", "-n", namespace)
    assert not can_i(cp, subject, "update", "leases.coordination.k8s.io/someone-else", "-n", namespace)
    assert not can_i(cp, subject, "get", "leases.coordination.k8s.io", "-n", "kube-system")
    # What it must not do.
    for verb, resource in REFUSED:
        for where in (namespace, apps):
            assert not can_i(cp, subject, verb, resource, "-n", where), f"can {verb} {resource} in {where}"
    assert not can_i(cp, subject, "list", "secrets", "--all-namespaces")
    # Its drain key: that one Secret in its own namespace (create cannot be limited by name).
    drain_key = env["CHUTE_OPERATOR_DRAIN_KEY_SECRET"]
    assert can_i(cp, subject, "get", f"secrets/{drain_key}", "-n", namespace)
    assert can_i(cp, subject, "create", "secrets", "-n", namespace)
    assert not can_i(cp, subject, "get", "secrets/someone-else", "-n", namespace)
    assert not can_i(cp, subject, "update", f"secrets/{drain_key}", "-n", namespace)
    assert not can_i(cp, subject, "create", "secrets", "-n", apps)
    for verb, resource in REFUSED_CLUSTER:
        assert not can_i(cp, subject, verb, resource), f"can {verb} {resource}"

    # The operator with only the ServiceAccount's token reconciles a Chute end to end.
    kubeconfig = token_kubeconfig(cp, release, tmp_path / "sa.kubeconfig")
    refused = subprocess.run(
        [str(cp.tools.kubectl), f"--kubeconfig={kubeconfig}", "get", "secrets", "-n", apps],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    operator = run_operator(release, kubeconfig, "co-wide-operator-0")
    apply(cp, cpu_chute("embed"), apps)
    found = eventually(lambda: reconciled(cp, "embed", apps), timeout=90, what="status.observedGeneration")
    assert condition(found, "Ready"), found.get("status")
    for kind in ("deployment", "service", "horizontalpodautoscaler", "networkpolicy", "servicemonitor"):
        eventually(lambda k=kind: get(cp, k, "embed", apps), timeout=60, what=kind)
    cp.kubectl("wait", "--for=condition=Ready", "chute/embed", "-n", apps, "--timeout=120s")
    held = get(cp, "lease", lease_name, namespace)
    assert held is not None
    assert held["spec"]["holderIdentity"] == "co-wide-operator-0"
    # A second replica (HA) with the same ServiceAccount stands by, and takes the Lease over.
    standby = run_operator(release, kubeconfig, "co-wide-operator-1")
    assert operator.metric("chute_operator_leader") == 1

    # Pruning needs delete: turning the ServiceMonitor off removes it.
    cp.kubectl(
        "patch",
        "chute",
        "embed",
        "-n",
        apps,
        "--type=merge",
        "-p",
        '{"spec":{"monitoring":{"serviceMonitor":false}}}',
    )
    eventually(lambda: get(cp, "servicemonitor", "embed", apps) is None, timeout=60, what="pruned")
    # it made its drain key at start, as its ServiceAccount
    assert get(cp, "secret", drain_key, namespace) is not None
    assert operator.metric("chute_operator_api_errors_total", code="403") == 0
    assert operator.forbidden() == []
    operator.stop()
    eventually(
        lambda: (
            (get(cp, "lease", lease_name, namespace) or {}).get("spec", {}).get("holderIdentity")
            == "co-wide-operator-1"
        ),
        timeout=60,
        what="the standby to take the Lease over",
    )
    eventually(lambda: standby.metric("chute_operator_leader") == 1, timeout=30, what="standby leads")
    assert standby.forbidden() == []
    standby.stop()

    # Uninstall keeps the CRD (and so the Chute) and what the Chute owns (its workload keeps serving),
    # and the Secret the operator made; it removes the chart's objects, cluster-wide RBAC included.
    helm.with_kubeconfig(cp.kubeconfig).run("uninstall", release.name, "-n", namespace, "--wait")
    assert get(cp, "crd", CRD_NAME, "") is not None
    assert get(cp, "chute", "embed", apps) is not None
    assert get(cp, "deployment", "embed", apps) is not None
    assert get(cp, "service", "embed", apps) is not None
    assert get(cp, "secret", drain_key, namespace) is not None
    assert get(cp, "clusterrole", release.name + "-chute-operator", "") is None


def test_namespaced_install_reconciles_only_its_namespaces(
    control_plane: Any, namespace: str, other_namespace: str, install: Any, run_operator: Any, tmp_path: Path
) -> None:
    cp = control_plane
    watched = other_namespace
    release = install(
        "co-ns", namespace, CHART / "ci" / "namespaced-values.yaml", sets=(f"watchNamespaces={{{watched}}}",)
    )
    subject = release.subject
    cluster_roles = [o["metadata"]["name"] for o in release.objects if o["kind"] == "ClusterRole"]
    assert sorted(cluster_roles) == ["co-ns-chute-operator-discovery", "co-ns-chute-operator-gpu-profile"]
    assert can_i(cp, subject, "watch", "chutes.chutes.ai", "-n", watched)
    assert can_i(cp, subject, "patch", "deployments.apps", "-n", watched)
    assert not can_i(cp, subject, "list", "chutes.chutes.ai", "--all-namespaces")
    assert not can_i(cp, subject, "list", "chutes.chutes.ai", "-n", namespace)
    assert not can_i(cp, subject, "patch", "deployments.apps", "-n", "default")
    assert not can_i(cp, subject, "get", "secrets", "-n", watched)
    assert not can_i(cp, subject, "get", "namespaces")
    assert not can_i(cp, subject, "delete", "namespaces")

    kubeconfig = token_kubeconfig(cp, release, tmp_path / "sa.kubeconfig")
    operator = run_operator(release, kubeconfig, "co-ns-operator-0")
    assert operator.chart_env["CHUTE_OPERATOR_NAMESPACES"] == watched
    apply(cp, cpu_chute("inside"), watched)
    apply(cp, cpu_chute("outside"), namespace)
    eventually(lambda: reconciled(cp, "inside", watched), timeout=90, what="status.observedGeneration")
    eventually(lambda: get(cp, "deployment", "inside", watched), timeout=60, what="deployment")
    assert (get(cp, "chute", "outside", namespace) or {}).get("status") is None
    assert get(cp, "deployment", "outside", namespace) is None
    assert operator.metric("chute_operator_api_errors_total", code="403") == 0
    assert operator.forbidden() == []


SERVICE_MONITORS = "servicemonitors.monitoring.coreos.com"


def test_namespaced_install_follows_the_servicemonitor_api_coming_and_going(
    control_plane: Any, namespace: str, other_namespace: str, install: Any, run_operator: Any, tmp_path: Path
) -> None:
    """The API is looked for by discovery (not by listing in a namespace the operator may not read):
    installed later, it is noticed; deleted while the operator runs, reconciles go on without it."""
    cp = control_plane
    watched = other_namespace
    crd_file = CHART.parents[1] / "tests" / "fixtures" / "servicemonitor-crd.yaml"
    had_crd = get(cp, "crd", SERVICE_MONITORS, "") is not None
    if had_crd:
        cp.kubectl("delete", "crd", SERVICE_MONITORS, "--wait=true", "--timeout=120s")
    try:
        release = install(
            "co-mon",
            namespace,
            CHART / "ci" / "namespaced-values.yaml",
            sets=(f"watchNamespaces={{{watched}}}", "operator.monitoringRecheckSeconds=2"),
        )
        kubeconfig = token_kubeconfig(cp, release, tmp_path / "sa.kubeconfig")
        operator = run_operator(release, kubeconfig, "co-mon-0")

        def monitored() -> dict[str, Any]:
            return condition(get(cp, "chute", "watched", watched), "Monitored")

        apply(cp, cpu_chute("watched"), watched)
        eventually(lambda: monitored().get("reason") == "MonitoringUnavailable", what="MonitoringUnavailable")

        cp.kubectl("apply", "--server-side", "-f", str(crd_file))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{SERVICE_MONITORS}")
        eventually(lambda: get(cp, "servicemonitor", "watched", watched), timeout=60, what="ServiceMonitor")
        eventually(lambda: monitored().get("status") == "True", what="Monitored=True")

        cp.kubectl("delete", "crd", SERVICE_MONITORS, "--wait=true", "--timeout=120s")
        patch = json.dumps({"spec": {"concurrency": 3}})
        cp.kubectl("patch", "chute", "watched", "-n", watched, "--type=merge", "-p", patch)
        eventually(
            lambda: reconciled(cp, "watched", watched) and monitored().get("status") == "False",
            timeout=150,  # the apply that meets the deleted API fails and is retried after a back-off
            what="the change reconciled without the ServiceMonitor API",
        )
        deployment = get(cp, "deployment", "watched", watched) or {}
        assert "--concurrency=3" in deployment["spec"]["template"]["spec"]["initContainers"][0]["args"]
        errors = operator.metric("chute_operator_reconciles_total", result="error")
        time.sleep(6)
        assert operator.metric("chute_operator_reconciles_total", result="error") == errors  # no retry loop
        assert operator.metric("chute_operator_api_errors_total", code="403") == 0
        assert operator.forbidden() == []
    finally:
        if had_crd:
            cp.kubectl("apply", "--server-side", "-f", str(crd_file))
            cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{SERVICE_MONITORS}")
        else:
            cp.kubectl("delete", "crd", SERVICE_MONITORS, "--ignore-not-found", "--timeout=120s", check=False)


def printer_columns(cp: Any) -> list[dict[str, Any]]:
    crd = get(cp, "crd", CRD_NAME, "")
    assert crd is not None
    return list(crd["spec"]["versions"][0]["additionalPrinterColumns"])


def test_upgrade_brings_the_crd_up_to_date(
    control_plane: Any, namespace: str, install: Any, helm: Helm
) -> None:
    """The CRD is a template, so `helm upgrade` updates it (here: restores a column an older CRD lacked)."""
    cp = control_plane
    release = install("co-up", namespace, sets=("rbac.create=false", "metrics.service.enabled=false"))
    columns = printer_columns(cp)
    last = len(columns) - 1
    patch = [{"op": "remove", "path": f"/spec/versions/0/additionalPrinterColumns/{last}"}]
    cp.kubectl("patch", "crd", CRD_NAME, "--type=json", "-p", json.dumps(patch))
    try:
        assert len(printer_columns(cp)) == last
        helm.with_kubeconfig(cp.kubeconfig).run(
            "upgrade", release.name, str(CHART), "-n", namespace, "--reuse-values"
        )
        assert printer_columns(cp) == columns
        current = get(cp, "crd", CRD_NAME, "")
        assert current is not None
        assert current["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    finally:
        cp.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(CHART.parents[1] / "crds" / "chute.yaml")
        )
