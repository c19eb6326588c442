"""`helm upgrade` in pods restarts no Chute pod; a new sidecar reaches them only when asked (issue 26,
item 4).

Three releases go to the local cluster's registry, each with its own `scripts/release`
(tests/upgrade_harness.py): A, this checkout; B, the next patch version (another operator image, the
same sidecar tag); C, the one after, with a line added to the sidecar's code (a new sidecar tag),
both built while A is installed and its Chutes start. A is installed in pods (one operator replica)
and two Chutes serve on the real node while a bounded stream of requests goes to both Services
throughout:

1. `helm upgrade` to B: the operator's pod runs B's image and leads; B's operator has reconciled both
   Chutes and written no Deployment; the Chutes' pods are the same (uids, no restart) and no
   Deployment's generation moved;
2. `helm upgrade` to C (`sidecarUpdatePolicy` Manual, the default): both Chutes say `SidecarBehind`,
   their pods and Deployments untouched;
3. both Chutes annotated `chutes.ai/sidecar-update=true` at once: they roll to C's sidecar one at a
   time (sampled: never two Deployments rolling together), each keeping a replica available (a surge
   pod on a spare GPU), and end `SidecarCurrent` True (`SidecarUpToDate`).

Every request is answered 200. No host-process operator runs meanwhile (session_operator_paused).
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from chute_devcluster.release import chart_sidecar_tag
from chute_operator.api.reasons import SIDECAR_BEHIND, SIDECAR_UP_TO_DATE
from chute_operator.sidecars import SIDECAR_UPDATE_ANNOTATION
from chute_operator.version import VERSION
from tests.chart.helm import Helm
from tests.kube_helpers import apply, condition, eventually, get, items, service_address
from tests.realnode.test_chart_in_pods import adopt_crd, helm, release_to_local_registry, values
from tests.scale_to_zero_harness import chute
from tests.upgrade_harness import (
    RELEASE,
    Traffic,
    helm_to,
    next_version,
    pod_metric,
    publish,
    rolled_out,
    selector,
    sidecar_image,
    stage_release,
)

__all__ = ["helm"]
pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(1500)]

NAMES = ("up-one", "up-two")


def _pods(cp: ControlPlane, namespace: str) -> dict[str, tuple[str, list[int]]]:
    """The Chutes' pods: uid -> (name, restart count of each container, the sidecar's too)."""
    found = {}
    for name in NAMES:
        for pod in items(cp, "pod", namespace, f"app.kubernetes.io/instance={name}"):
            status = pod.get("status") or {}
            statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
            found[pod["metadata"]["uid"]] = (pod["metadata"]["name"], [s["restartCount"] for s in statuses])
    return found


def _deployments(cp: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    found = {d["metadata"]["name"]: d for d in items(cp, "deployment", namespace)}
    return {name: found[name] for name in NAMES}


def _generations(cp: ControlPlane, namespace: str) -> dict[str, int]:
    return {name: d["metadata"]["generation"] for name, d in _deployments(cp, namespace).items()}


def _sidecar_reason(cp: ControlPlane, name: str, namespace: str) -> str:
    return str(condition(get(cp, "chute", name, namespace), "SidecarCurrent").get("reason", ""))


def _says(cp: ControlPlane, name: str, namespace: str, reason: str) -> bool:
    return _sidecar_reason(cp, name, namespace) == reason


def _every_chute_says(cp: ControlPlane, namespace: str, reason: str) -> None:
    for name in NAMES:
        eventually(
            partial(_says, cp, name, namespace, reason),
            what=f"{name}: SidecarCurrent reason {reason}",
            timeout=60,
        )


def test_a_helm_upgrade_restarts_no_chute_pod_and_the_opt_in_rolls_one_chute_at_a_time(
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

    staged_b = stage_release(tmp_path, next_version(VERSION, 1))
    staged_c = stage_release(tmp_path, next_version(VERSION, 2), sidecar_change="release C: a new sidecar")
    assert chart_sidecar_tag(staged_b) == chart_sidecar_tag()
    assert chart_sidecar_tag(staged_c) != chart_sidecar_tag()
    a = release_to_local_registry(cp, helm, tmp_path)
    mark("released A")
    # B and C are built while A is installed and its Chutes start
    releasing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="release")
    later = [
        releasing.submit(publish, staged, cp.registry, helm.binary, tmp_path)
        for staged in (staged_b, staged_c)
    ]
    releasing.shutdown(wait=False)

    adopt_crd(cp, namespace)
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({**values(namespace, real_node), "replicaCount": 1}))
    cluster_helm = helm.with_kubeconfig(cp.kubeconfig)

    try:
        helm_to(cp, cluster_helm, a, namespace, values_file, "install")
        mark("A installed, operator leading")
        for name in NAMES:
            manifest = chute(a["image"], real_node.name, load_seconds=1.0, name=name)
            manifest["spec"].update({"minInstances": 1, "maxInstances": 1})
            apply(cp, manifest, namespace)
        urls = {}
        for name in NAMES:
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
        assert len(pods) == len(NAMES), pods
        assert all(counts == [0, 0] for _, counts in pods.values()), pods
        old_sidecar = {sidecar_image(d) for d in _deployments(cp, namespace).values()}
        assert len(old_sidecar) == 1, old_sidecar
        b, c = (release.result(timeout=1200) for release in later)
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
                lambda: pod_metric(leader_ip, "chute_operator_reconciles_total") >= len(NAMES),
                what="B's operator reconciling both Chutes",
                timeout=60,
            )
            assert pod_metric(leader_ip, "chute_operator_api_writes_total", kind="Deployment") == 0
            assert pod_metric(leader_ip, "chute_operator_chutes_sidecar_behind") == 0
            assert _pods(cp, namespace) == pods, "the same pods, none restarted"
            assert _generations(cp, namespace) == generations
            assert {_sidecar_reason(cp, n, namespace) for n in NAMES} == {SIDECAR_UP_TO_DATE}
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
            for name in NAMES:
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
                    n
                    for n, d in deployments.items()
                    if (d.get("status") or {}).get("availableReplicas", 0) < 1
                ]
                assert unserved == [], f"without an available replica: {unserved}"
                for name in moved:
                    started.setdefault(name, sample)
                for name in moved - moving:
                    finished.setdefault(name, sample)
                if len(finished) == len(NAMES):
                    break
                time.sleep(0.2)
            assert most_at_once == 1, "never two Chutes rolling to the new sidecar at once"
            first, second = sorted(NAMES, key=started.__getitem__)
            assert finished[first] <= started[second], (started, finished)
            _every_chute_says(cp, namespace, SIDECAR_UP_TO_DATE)
            mark("both Chutes on C's sidecar")
            served = traffic.counts()
        assert traffic.failed() == [], traffic.failed()[:10]
        assert all(served[n] > served_before_roll.get(n, 0) for n in NAMES), (served_before_roll, served)
        eventually(lambda: not set(_pods(cp, namespace)) & set(pods), what="every old pod gone", timeout=90)
        print(f"\nchart upgrade in pods ({len(traffic.answers)} requests, all 200): {times}")
    finally:
        releasing.shutdown(cancel_futures=True)
        cluster_helm.run("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout=120s", check=False)
