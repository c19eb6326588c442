"""The chart deployed for real, as users run it (issue 26, item 3).

`scripts/release` builds the image and pushes it and the chart to the local cluster's registry;
`helm install oci://127.0.0.1:PORT/charts/chute-operator --plain-http` installs it. The operator (two
replicas, leader election; it serves the metrics API too) and the activator run as pods on the real
node, with the chart's ServiceAccounts and RBAC, reaching the API server through the `kubernetes`
Service (the API server advertises the real node's bridge address: docs/control-plane.md). A Chute
applied afterwards:

1. is Ready and served through its Service;
2. its HPA reads its metric through the APIService the chart installed (the API server proxies to the
   operator pods' metrics API);
3. goes to zero after its idle window, and a request to its Service wakes it through the chart's
   activator pod (the activator's own counters move) and is answered 200.

No host-process operator runs meanwhile (session_operator_paused). About 4-5 minutes: the image build
(its dependency layers cached), the pods' start, the 60 s idle window.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster import chart_install
from chute_devcluster.binaries import ensure_binaries, toolset
from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from chute_operator.version import VERSION
from tests.chart.helm import Helm
from tests.kube_helpers import apply, condition, eventually, get, items, service_address
from tests.realnode.conftest import Answer, http
from tests.scale_to_zero_harness import IDLE_WINDOW, NAME, activator_counters, at_zero, chute

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(900)]

RELEASE = "co"
APISERVICE = chart_install.APISERVICE
CRD_NAME = chart_install.CRD_NAME


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The pinned helm (built with the control plane's binaries; cached), with its own home."""
    binary = toolset().helm
    if not binary.exists():
        binary = ensure_binaries().helm
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


# The steps live in chute_devcluster.chart_install (the demo installs the chart the same way); these
# names stay for the tests that build on this one.


def release_to_local_registry(cp: ControlPlane, helm: Helm, work: Path) -> dict[str, str]:
    """scripts/release against the cluster's registry (plain HTTP); what it published."""
    return chart_install.publish(cp.registry, helm.binary, work)


def values(namespace: str, real_node: RealNode) -> dict[str, Any]:
    """The user's values (chart_install.values), watching the test's namespace only."""
    return chart_install.values(real_node.name, [namespace])


def adopt_crd(cp: ControlPlane, namespace: str) -> None:
    """The session installed the CRD with kubectl: let the release take it over (it is kept at uninstall)."""
    chart_install.adopt_crd(cp.kubeconfig, namespace, RELEASE)


def rollout(cp: ControlPlane, deployment: str, namespace: str, timeout: int = 240) -> None:
    chart_install.rollout(cp.kubeconfig, deployment, namespace, timeout)


def ready_pod_ips(cp: ControlPlane, namespace: str, selector: str) -> list[str]:
    return chart_install.ready_pod_ips(cp.kubeconfig, namespace, selector)


def _selector(deployment: dict[str, Any]) -> str:
    return chart_install.selector(deployment)


def chat(base_url: str, timeout: float = 30.0) -> Answer:
    """One chat completion from the simulated model (its name in modelsim's default)."""
    body = {"model": "chute-modelsim", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    return http(f"{base_url}/v1/chat/completions", body, timeout=timeout)


def woken(counters: dict[str, float]) -> float:
    """Requests the activator held to wake a Chute, and forwarded."""
    return sum(value for sample, value in counters.items() if "wakeups" in sample or "forwarded" in sample)


def test_the_chart_installed_from_the_registry_runs_the_product_in_pods(
    control_plane: ControlPlane,
    chute_crd: Path,
    real_node: RealNode,
    namespace: str,
    helm: Helm,
    tmp_path: Path,
    session_operator_paused: None,  # the chart's operator is the only one reconciling
) -> None:
    cp = control_plane
    times: dict[str, float] = {}
    began = time.monotonic()

    def mark(step: str) -> None:
        times[step] = round(time.monotonic() - began, 1)

    # The API server is reachable from pods: the `kubernetes` Service lists the bridge address.
    slices = items(cp, "endpointslice", "default", "kubernetes.io/service-name=kubernetes")
    addresses = {a for s in slices for e in s.get("endpoints") or [] for a in e.get("addresses") or []}
    assert real_node.settings.node_ip in addresses, slices

    published = release_to_local_registry(cp, helm, tmp_path)
    assert published["image"] == f"{cp.registry}/chute-operator:{VERSION}", published
    mark("released")

    cluster_helm = helm.with_kubeconfig(cp.kubeconfig)
    chart_install.install(cluster_helm, published, values(namespace, real_node), tmp_path, namespace, RELEASE)
    try:
        running = chart_install.wait_running(cluster_helm, namespace, RELEASE, mark)
        operator_pods = running.operator_pods(cp.kubeconfig, namespace)
        assert len({pod["metadata"]["name"] for pod in operator_pods}) >= 2
        assert all(pod["spec"]["nodeName"] == real_node.name for pod in operator_pods)

        image = published["image"]
        apply(cp, chute(image, real_node.name, load_seconds=1.0), namespace)
        cp.kubectl(
            "wait", "--for=condition=Ready", f"chute/{NAME}", "-n", namespace, "--timeout=180s", timeout=210
        )
        host, port = service_address(cp, NAME, namespace, timeout=60)
        answer = chat(f"http://{host}:{port}")
        assert answer.status == 200, answer.body[:500]
        mark("Chute served")

        def hpa_reads() -> bool:
            hpa = get(cp, "hpa", NAME, namespace) or {}
            current = (hpa.get("status") or {}).get("currentMetrics") or []
            active = condition(hpa, "ScalingActive").get("status") == "True"
            return active and bool(current)

        eventually(hpa_reads, what="the HPA reading its metric through the APIService", timeout=120)
        mark("HPA reads the metric")

        eventually(lambda: at_zero(cp, namespace), what="the Chute at zero", timeout=IDLE_WINDOW + 120)
        eventually(
            # gone, not only unready: kube-proxy sends to a terminating pod that still serves while
            # no pod is ready (the sidecar drains), and that answer would not be the activator's
            lambda: not items(cp, "pod", namespace, f"app.kubernetes.io/instance={NAME}"),
            what="the Chute's pod gone",
            timeout=150,
        )
        mark("at zero")

        activator = running.deployments[running.activator]
        activator_ip = ready_pod_ips(cp, namespace, _selector(activator))[0]
        before = activator_counters(9090, activator_ip)
        deployment_before = (get(cp, "deployment", NAME, namespace) or {}).get("status")
        host, port = service_address(cp, NAME, namespace, timeout=60)
        answer = chat(f"http://{host}:{port}", timeout=180)
        assert answer.status == 200, answer.body[:500]

        # The activator counts a request once the replica has answered it: read until it has.
        def moved() -> dict[str, float] | None:
            now = activator_counters(9090, activator_ip)
            return now if woken(now) > woken(before) else None

        try:
            eventually(moved, what="the activator's wakeup and forwarded counters to move", timeout=15)
        except AssertionError as error:
            raise AssertionError(
                f"{error}\nbefore: {before}\nafter: {activator_counters(9090, activator_ip)}\n"
                f"deployment before the request: {deployment_before}\nanswer headers: {answer.headers}"
            ) from None
        assert not at_zero(cp, namespace)
        mark("woken through the activator")
        print(f"\nchart in pods (leader {running.leader}): {times}")
    finally:
        chart_install.uninstall(cluster_helm, namespace, RELEASE)
