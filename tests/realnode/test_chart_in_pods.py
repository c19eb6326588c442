"""The chart deployed for real, as users run it (issue 26, items 3 and 4), by two tests that share one
install (one release A, published and installed once for both: they run in file order).

`scripts/release` builds the image and pushes it and the chart to the local cluster's registry;
`helm install oci://127.0.0.1:PORT/charts/chute-operator --plain-http` installs it. The operator (two
replicas, leader election; it serves the metrics API too) and the activator run as pods on the real
node, with the chart's ServiceAccounts and RBAC, reaching the API server through the `kubernetes`
Service (the API server advertises the real node's bridge address: docs/control-plane.md).

**The product in pods.** A Chute applied after the install:

1. is Ready and served through its Service;
2. its HPA reads its metric through the APIService the chart installed (the API server proxies to the
   operator pods' metrics API);
3. goes to zero after its idle window, and a request to its Service wakes it through the chart's
   activator pod (the activator's own counters move) and is answered 200.

**`helm upgrade` restarts no Chute pod; a new sidecar reaches them only when asked.** Two more releases
go to the registry, each with its own `scripts/release` (tests/upgrade_harness.py): B, the next patch
version (another operator image, the same sidecar tag); C, the one after, with a line added to the
sidecar's code (a new sidecar tag), both built while A's Chutes start. Two Chutes serve on the real
node while a bounded stream of requests goes to both Services throughout:

1. `helm upgrade` to B (one operator replica from here): the operator's pod runs B's image and leads;
   B's operator has reconciled both Chutes and written no Deployment; the Chutes' pods are the same
   (uids, no restart) and no Deployment's generation moved;
2. `helm upgrade` to C (`sidecarUpdatePolicy` Manual, the default): both Chutes say `SidecarBehind`,
   their pods and Deployments untouched;
3. both Chutes annotated `chutes.ai/sidecar-update=true` at once: they roll to C's sidecar one at a
   time (sampled: never two Deployments rolling together), each keeping a replica available (a surge
   pod on a spare GPU), and end `SidecarCurrent` True (`SidecarUpToDate`).

Every request is answered 200. No host-process operator runs meanwhile
(session_operator_paused_for_module).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from chute_devcluster import chart_install
from chute_devcluster.binaries import ensure_binaries, toolset
from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from chute_devcluster.release import chart_sidecar_tag
from chute_operator.api.reasons import SIDECAR_BEHIND, SIDECAR_UP_TO_DATE
from chute_operator.sidecars import SIDECAR_UPDATE_ANNOTATION
from chute_operator.version import VERSION
from tests.chart.helm import Helm
from tests.conftest import fresh_namespace
from tests.kube_helpers import apply, condition, eventually, get, items, service_address
from tests.scale_to_zero_harness import IDLE_WINDOW, NAME, activator_counters, at_zero, chute
from tests.upgrade_harness import (
    Traffic,
    chat,
    helm_to,
    next_version,
    pod_metric,
    publish,
    rolled_out,
    selector,
    sidecar_image,
    stage_release,
)

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(1500)]

RELEASE = "co"
APISERVICE = chart_install.APISERVICE
CRD_NAME = chart_install.CRD_NAME
UPGRADED = ("up-one", "up-two")
"""The upgrade test's Chutes."""


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The pinned helm (built with the control plane's binaries; cached), with its own home."""
    binary = toolset().helm
    if not binary.exists():
        binary = ensure_binaries().helm
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


def release_to_local_registry(cp: ControlPlane, helm: Helm, work: Path) -> dict[str, str]:
    """scripts/release against the cluster's registry (plain HTTP); what it published."""
    return chart_install.publish(cp.registry, helm.binary, work)


def values(namespace: str, real_node: RealNode) -> dict[str, Any]:
    """The user's values (chart_install.values), watching the test's namespace only."""
    return chart_install.values(real_node.name, [namespace])


def adopt_crd(cp: ControlPlane, namespace: str) -> None:
    """The session installed the CRD with kubectl: let the release take it over (it is kept at uninstall)."""
    chart_install.adopt_crd(cp.kubeconfig, namespace, RELEASE)


def woken(counters: dict[str, float]) -> float:
    """Requests the activator held to wake a Chute, and forwarded."""
    return sum(value for sample, value in counters.items() if "wakeups" in sample or "forwarded" in sample)


@dataclass
class Installed:
    """Release A as the module's tests find it: published, installed in ``namespace``, running."""

    published: dict[str, str]
    helm: chart_install.Helm
    """helm with the cluster's kubeconfig."""
    namespace: str
    running: chart_install.Running
    times: dict[str, float]
    """Seconds from the start of the install to each of its steps."""
    later: tuple[Future[dict[str, str]], Future[dict[str, str]]]
    """Releases B and C (the upgrade test's), published in the background from the start."""
    staged: tuple[Path, Path]
    """Their staged checkouts."""


@pytest.fixture(scope="module")
def installed(
    control_plane: ControlPlane,
    chute_crd: Path,
    real_node: RealNode,
    helm: Helm,
    tmp_path_factory: pytest.TempPathFactory,
    session_operator_paused_for_module: None,  # the chart's operator is the only one reconciling
) -> Iterator[Installed]:
    """Release A, published to the cluster's registry and installed once for the module's tests (two
    operator replicas and the activator in pods, watching the module's namespace); uninstalled after."""
    cp = control_plane
    work = tmp_path_factory.mktemp("release-a")
    times: dict[str, float] = {}
    began = time.monotonic()

    def mark(step: str) -> None:
        times[step] = round(time.monotonic() - began, 1)

    staged = (
        stage_release(work, next_version(VERSION, 1)),
        stage_release(work, next_version(VERSION, 2), sidecar_change="release C: a new sidecar"),
    )
    releasing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="release")
    with fresh_namespace(cp, f"t-chart-in-pods-{work.name[-6:]}".lower().replace("_", "-")) as namespace:
        try:
            published = release_to_local_registry(cp, helm, work)
            assert published["image"] == f"{cp.registry}/chute-operator:{VERSION}", published
            mark("released")
            # B and C are built while A is installed and the first test runs (minutes of image builds)
            b, c = (releasing.submit(publish, path, cp.registry, helm.binary, work) for path in staged)
            cluster_helm = helm.with_kubeconfig(cp.kubeconfig)
            chart_install.install(
                cluster_helm, published, values(namespace, real_node), work, namespace, RELEASE
            )
            try:
                running = chart_install.wait_running(cluster_helm, namespace, RELEASE, mark)
                yield Installed(published, cluster_helm, namespace, running, times, (b, c), staged)
            finally:
                chart_install.uninstall(cluster_helm, namespace, RELEASE)
        finally:
            releasing.shutdown(wait=False, cancel_futures=True)


def test_the_chart_installed_from_the_registry_runs_the_product_in_pods(
    control_plane: ControlPlane, real_node: RealNode, installed: Installed
) -> None:
    cp, namespace, running = control_plane, installed.namespace, installed.running
    times = dict(installed.times)
    began = time.monotonic()

    def mark(step: str) -> None:
        times[step] = round(time.monotonic() - began, 1)

    # The API server is reachable from pods: the `kubernetes` Service lists the bridge address.
    slices = items(cp, "endpointslice", "default", "kubernetes.io/service-name=kubernetes")
    addresses = {a for s in slices for e in s.get("endpoints") or [] for a in e.get("addresses") or []}
    assert real_node.settings.node_ip in addresses, slices

    operator_pods = running.operator_pods(cp.kubeconfig, namespace)
    assert len({pod["metadata"]["name"] for pod in operator_pods}) >= 2
    assert all(pod["spec"]["nodeName"] == real_node.name for pod in operator_pods)

    image = installed.published["image"]
    apply(cp, chute(image, real_node.name, load_seconds=1.0), namespace)
    try:
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
        activator_ip = chart_install.ready_pod_ips(cp.kubeconfig, namespace, selector(activator))[0]
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
        # the upgrade test after this one counts its own Chutes' pods and its operator's writes; the
        # pods of this one may still terminate then (the node has a GPU for them)
        cp.kubectl("delete", "chute", NAME, "-n", namespace, "--ignore-not-found", "--wait=true", timeout=120)


def _pods(cp: ControlPlane, namespace: str) -> dict[str, tuple[str, list[int]]]:
    """The Chutes' pods: uid -> (name, restart count of each container, the sidecar's too)."""
    found = {}
    for name in UPGRADED:
        for pod in items(cp, "pod", namespace, f"app.kubernetes.io/instance={name}"):
            status = pod.get("status") or {}
            statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
            found[pod["metadata"]["uid"]] = (pod["metadata"]["name"], [s["restartCount"] for s in statuses])
    return found


def _deployments(cp: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    found = {d["metadata"]["name"]: d for d in items(cp, "deployment", namespace)}
    return {name: found[name] for name in UPGRADED}


def _generations(cp: ControlPlane, namespace: str) -> dict[str, int]:
    return {name: d["metadata"]["generation"] for name, d in _deployments(cp, namespace).items()}


def _sidecar_reason(cp: ControlPlane, name: str, namespace: str) -> str:
    return str(condition(get(cp, "chute", name, namespace), "SidecarCurrent").get("reason", ""))


def _says(cp: ControlPlane, name: str, namespace: str, reason: str) -> bool:
    return _sidecar_reason(cp, name, namespace) == reason


def _every_chute_says(cp: ControlPlane, namespace: str, reason: str) -> None:
    for name in UPGRADED:
        eventually(
            partial(_says, cp, name, namespace, reason),
            what=f"{name}: SidecarCurrent reason {reason}",
            timeout=60,
        )


def test_a_helm_upgrade_restarts_no_chute_pod_and_the_opt_in_rolls_one_chute_at_a_time(
    control_plane: ControlPlane,
    real_node: RealNode,
    helm: Helm,
    installed: Installed,
    tmp_path: Path,
) -> None:
    cp, namespace, a, cluster_helm = control_plane, installed.namespace, installed.published, installed.helm
    times: dict[str, float] = {}
    began = time.monotonic()

    def mark(step: str) -> None:
        times[step] = round(time.monotonic() - began, 1)

    staged_b, staged_c = installed.staged
    assert chart_sidecar_tag(staged_b) == chart_sidecar_tag()
    assert chart_sidecar_tag(staged_c) != chart_sidecar_tag()

    # from B on, one operator replica: the leader is the one pod on the new image
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({**values(namespace, real_node), "replicaCount": 1}))

    for name in UPGRADED:
        manifest = chute(a["image"], real_node.name, load_seconds=1.0, name=name)
        manifest["spec"].update({"minInstances": 1, "maxInstances": 1})
        apply(cp, manifest, namespace)
    urls = {}
    for name in UPGRADED:
        cp.kubectl(
            "wait",
            "--for=condition=Ready",
            f"chute/{name}",
            "-n",
            namespace,
            "--timeout=180s",
            timeout=210,
        )
        host, port = service_address(cp, name, namespace, timeout=60)
        urls[name] = f"http://{host}:{port}"
    mark("Chutes served")
    pods, generations = _pods(cp, namespace), _generations(cp, namespace)
    assert len(pods) == len(UPGRADED), pods
    assert all(counts == [0, 0] for _, counts in pods.values()), pods
    old_sidecar = {sidecar_image(d) for d in _deployments(cp, namespace).values()}
    assert len(old_sidecar) == 1, old_sidecar
    b, c = (release.result(timeout=1200) for release in installed.later)
    assert len({a["image"], b["image"], c["image"]}) == 3, (a, b, c)
    mark("released B, C")

    with Traffic(urls) as traffic:
        # 1. the sidecar unchanged: nothing of a Chute moves
        operator = helm_to(cp, cluster_helm, b, namespace, values_file)
        mark("B's operator leading")
        leader_ip = next(
            p["status"]["podIP"] for p in items(cp, "pod", namespace, selector(operator))
            if not p["metadata"].get("deletionTimestamp")
        )  # fmt: skip
        eventually(
            lambda: pod_metric(leader_ip, "chute_operator_reconciles_total") >= len(UPGRADED),
            what="B's operator reconciling both Chutes",
            timeout=60,
        )
        assert pod_metric(leader_ip, "chute_operator_api_writes_total", kind="Deployment") == 0
        assert pod_metric(leader_ip, "chute_operator_chutes_sidecar_behind") == 0
        assert _pods(cp, namespace) == pods, "the same pods, none restarted"
        assert _generations(cp, namespace) == generations
        assert {_sidecar_reason(cp, n, namespace) for n in UPGRADED} == {SIDECAR_UP_TO_DATE}
        assert traffic.failed() == [], traffic.failed()[:10]

        # 2. the sidecar changed, policy Manual: the Chutes say so and keep their pods
        helm_to(cp, cluster_helm, c, namespace, values_file)
        mark("C's operator leading")
        _every_chute_says(cp, namespace, SIDECAR_BEHIND)
        assert _pods(cp, namespace) == pods, "the same pods, none restarted"
        assert _generations(cp, namespace) == generations
        assert {sidecar_image(d) for d in _deployments(cp, namespace).values()} == old_sidecar
        assert traffic.failed() == [], traffic.failed()[:10]
        served_before_roll = traffic.counts()

        # 3. the opt-in, both at once: one Chute at a time rolls to the new sidecar
        for name in UPGRADED:
            cp.kubectl("annotate", "chute", name, "-n", namespace, f"{SIDECAR_UPDATE_ANNOTATION}=true")
        started: dict[str, int] = {}  # the sample each Chute was first seen on the new sidecar
        finished: dict[str, int] = {}  # and first seen rolled out on it
        most_at_once, deadline = 0, time.monotonic() + 300
        for sample in itertools.count():
            assert time.monotonic() < deadline, f"rolled out: {sorted(finished)}"
            deployments = _deployments(cp, namespace)
            moved = {n for n, d in deployments.items() if sidecar_image(d) not in old_sidecar}
            moving = {n for n in moved if not rolled_out(deployments[n])}
            most_at_once = max(most_at_once, len(moving))
            unserved = [
                n for n, d in deployments.items() if (d.get("status") or {}).get("availableReplicas", 0) < 1
            ]
            assert unserved == [], f"without an available replica: {unserved}"
            for name in moved:
                started.setdefault(name, sample)
            for name in moved - moving:
                finished.setdefault(name, sample)
            if len(finished) == len(UPGRADED):
                break
            time.sleep(0.2)
        assert most_at_once == 1, "never two Chutes rolling to the new sidecar at once"
        first, second = sorted(UPGRADED, key=started.__getitem__)
        assert finished[first] <= started[second], (started, finished)
        _every_chute_says(cp, namespace, SIDECAR_UP_TO_DATE)
        mark("both Chutes on C's sidecar")
        served = traffic.counts()
    assert traffic.failed() == [], traffic.failed()[:10]
    assert all(served[n] > served_before_roll.get(n, 0) for n in UPGRADED), (served_before_roll, served)
    eventually(lambda: not set(_pods(cp, namespace)) & set(pods), what="every old pod gone", timeout=90)
    print(f"\nchart upgrade in pods ({len(traffic.answers)} requests, all 200): {times}")
