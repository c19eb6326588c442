"""An operator upgrade restarts no pod (issue 26): a new operator with another sidecar image leaves
every serving Chute's Deployment alone and says the sidecar is behind; the opt-in then rolls the
Chutes to it one at a time. Operators as host processes against the local control plane (kwok
nodes): the in-pod ``helm upgrade`` of the chart is not tested here."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from chute_operator.sidecars import SIDECAR_UPDATE_ANNOTATION
from tests.chutes import cpu_chute
from tests.kube_helpers import apply, condition, eventually, get
from tests.operator_fixtures import OperatorProcess
from tests.upgrade_harness import rolled_out, sidecar_image

pytestmark = pytest.mark.e2e
NAMES = ("up-a", "up-b", "up-c")
OLD, NEW = "chute-operator:sidecar-old", "chute-operator:sidecar-new"
SLOW_START = {"annotations": {"sim.chutes.ai/ready-after": "4"}}
"""Each pod is Ready 4 s after it starts (a model's load, shortened): a rollout lasts long enough to
be seen, so two at once would be."""


def _operator(
    cp: Any, log_dir: Path, namespace: str, identity: str, sidecar: str, **env: str
) -> OperatorProcess:
    return OperatorProcess(
        cp.kubeconfig,
        log_dir,
        identity,
        namespaces=(namespace,),
        CHUTE_OPERATOR_LEASE_NAME=f"upgrade-{namespace}",
        CHUTE_OPERATOR_LEASE_DURATION_SECONDS="4",
        CHUTE_OPERATOR_SIDECAR_IMAGE=sidecar,
        **env,
    ).start()


def _deployments(cp: Any, namespace: str) -> dict[str, dict[str, Any]]:
    found = cp.kubectl("get", "deployments", "-n", namespace, "-o", "json")
    return {d["metadata"]["name"]: d for d in json.loads(found.stdout)["items"]}


def _sidecar_condition(cp: Any, name: str, namespace: str) -> dict[str, Any]:
    return condition(get(cp, "chute", name, namespace), "SidecarCurrent")


def test_an_upgrade_restarts_nothing_then_the_opt_in_rolls_one_chute_at_a_time(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path, session_operator_paused: None
) -> None:
    cp = control_plane
    before = _operator(cp, tmp_path, namespace, "op-version-a", OLD)
    try:
        for name in NAMES:
            apply(cp, cpu_chute(name, minInstances=1, maxInstances=1, pod=SLOW_START), namespace)
        for name in NAMES:
            cp.kubectl("wait", "--for=condition=Ready", f"chute/{name}", "-n", namespace, "--timeout=120s")
        assert {n: _sidecar_condition(cp, n, namespace)["status"] for n in NAMES} == dict.fromkeys(
            NAMES, "True"
        )
    finally:
        before.stop()
    serving = _deployments(cp, namespace)
    assert {name: sidecar_image(d) for name, d in serving.items()} == dict.fromkeys(NAMES, OLD)

    # the upgrade: an operator whose sidecar image is another (policy Manual, the default)
    after = _operator(cp, tmp_path, namespace, "op-version-b", NEW)
    try:
        eventually(lambda: after.metric("chute_operator_leader") == 1, what="the new operator leads")
        for name in NAMES:
            eventually(
                lambda name=name: _sidecar_condition(cp, name, namespace).get("reason") == "SidecarBehind",
                what=f"{name}: SidecarCurrent False (SidecarBehind)",
            )
        message = _sidecar_condition(cp, NAMES[0], namespace)["message"]
        assert OLD in message
        assert NEW in message
        eventually(lambda: after.metric("chute_operator_chutes_sidecar_behind") == 3, what="the gauge")
        time.sleep(3)
        now = _deployments(cp, namespace)
        assert {n: d["metadata"]["generation"] for n, d in now.items()} == {
            n: d["metadata"]["generation"] for n, d in serving.items()
        }, "no Deployment changed"
        assert {n: sidecar_image(d) for n, d in now.items()} == dict.fromkeys(NAMES, OLD)
        assert after.metric("chute_operator_api_writes_total", kind="Deployment") == 0
        for name in NAMES:
            assert condition(get(cp, "chute", name, namespace), "Ready")["status"] == "True"

        # the opt-in, every Chute at once: they roll one at a time
        for name in NAMES:
            cp.kubectl("annotate", "chute", name, "-n", namespace, f"{SIDECAR_UPDATE_ANNOTATION}=true")
        started: dict[str, float] = {}
        finished: dict[str, float] = {}
        deadline = time.monotonic() + 180
        most_at_once = 0
        while len(finished) < len(NAMES):
            assert time.monotonic() < deadline, f"rolled out: {sorted(finished)}\n{after.log_tail()}"
            deployments = _deployments(cp, namespace)
            moving = [n for n, d in deployments.items() if sidecar_image(d) == NEW and not rolled_out(d)]
            most_at_once = max(most_at_once, len(moving))
            # maxUnavailable 0: a Ready replica serves each Chute throughout (no request lacks one)
            unserved = [
                n for n, d in deployments.items() if (d.get("status") or {}).get("availableReplicas", 0) < 1
            ]
            assert unserved == [], f"without an available replica: {unserved}"
            for name, deployment in deployments.items():
                if sidecar_image(deployment) == NEW:
                    started.setdefault(name, time.monotonic())
                    if rolled_out(deployment):
                        finished.setdefault(name, time.monotonic())
            time.sleep(0.1)
        assert most_at_once <= 1, "never two Chutes rolling to the new sidecar at once"
        order = sorted(NAMES, key=lambda name: started[name])
        for earlier, later in itertools.pairwise(order):
            assert finished[earlier] <= started[later], (earlier, later, started, finished)
        for name in NAMES:
            eventually(
                lambda name=name: _sidecar_condition(cp, name, namespace).get("status") == "True",
                what=f"{name}: SidecarCurrent True",
            )
            cp.kubectl("wait", "--for=condition=Ready", f"chute/{name}", "-n", namespace, "--timeout=60s")
        eventually(lambda: after.metric("chute_operator_chutes_sidecar_behind") == 0, what="the gauge at 0")
    finally:
        after.stop()
