"""Autoscaling on real pods (issue 11): the operator's custom metrics API reads the real sidecars, the
real HPA controller scales the Chute up to maxInstances and no further while the load asks for more,
the Chute's status shows the autoscaler's view, and the Chute comes back down after the window.

The load goes only from this machine to the real node's pod IPs (kept on the machine by the network
guard): 4 streams on each ready pod, at most 2 pods (8 streams), held at most a few minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.autoscaling_load import FullReplicas, ReplicaSampler, ready_pod_ips
from tests.kube_helpers import apply, condition, eventually, get
from tests.metrics_api_harness import APISERVICE, metrics_api_on_loopback, real_node_chute

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(420)]

MAX_INSTANCES = 2
WINDOW = 60  # shutdownAfterSeconds: the smallest the API allows


View = tuple[dict[str, Any], dict[str, Any]]


def _autoscaler_when(
    cp: ControlPlane, namespace: str, wanted: Callable[[dict[str, Any], dict[str, Any]], bool]
) -> View | None:
    """The Chute's ``status.autoscaler`` and ``Autoscaling`` condition, once ``wanted`` holds for them."""
    chute = get(cp, "chute", "busy", namespace) or {}
    autoscaling = {"message": "", **condition(chute, "Autoscaling")}
    view = (chute.get("status") or {}).get("autoscaler") or {}, autoscaling
    return view if wanted(*view) else None


def _limited(cp: ControlPlane, namespace: str) -> str:
    """The reason of the HPA's ScalingLimited condition when it is True."""
    limited = condition(get(cp, "hpa", "busy", namespace), "ScalingLimited")
    return str(limited.get("reason", "")) if limited.get("status") == "True" else ""


def test_real_pods_scale_to_max_instances_never_past_it_and_back_down(
    control_plane: ControlPlane,
    chute_crd: Path,
    real_node: RealNode,
    project_image: str,
    namespace: str,
    tmp_path: Path,
    session_operator_paused: None,  # the test's operator is the only one reconciling its Chute
) -> None:
    cp = control_plane
    env = {"CHUTE_OPERATOR_SIDECAR_IMAGE": project_image}
    with metrics_api_on_loopback(cp, namespace, tmp_path, **env):
        chute = real_node_chute("busy", project_image, real_node.name)
        chute["spec"].update({"maxInstances": MAX_INSTANCES, "shutdownAfterSeconds": WINDOW})
        apply(cp, chute, namespace)
        eventually(
            lambda: condition(get(cp, "apiservice", APISERVICE, ""), "Available").get("status") == "True",
            what="the APIService Available",
            timeout=60,
        )
        eventually(lambda: ready_pod_ips(cp, "busy", namespace), what="the first pod Ready", timeout=120)
        eventually(
            lambda: condition(get(cp, "hpa", "busy", namespace), "ScalingActive").get("status") == "True",
            what="the HPA reading the metric (ScalingActive)",
            timeout=90,
        )
        load = FullReplicas(max_pods=MAX_INSTANCES)
        with ReplicaSampler(cp, "busy", namespace, interval=1.0, limit=300) as sampler:
            try:
                # 4 of 4 on one pod: utilization 1.0 over the threshold 0.5, so the HPA wants 2; with
                # both pods full it wants 4, more than maxInstances.
                load.fill(ready_pod_ips(cp, "busy", namespace))
                eventually(
                    lambda: load.fill(ready_pod_ips(cp, "busy", namespace)) == MAX_INSTANCES,
                    what="a second pod Ready (and loaded)",
                    timeout=120,
                )
                eventually(
                    lambda: _limited(cp, namespace) == "TooManyReplicas",
                    what="the HPA wanting more than maxInstances (ScalingLimited TooManyReplicas)",
                    timeout=60,
                )
                # The Chute's status: the autoscaler's view, with why it stops at maxInstances.
                view, autoscaling = eventually(
                    lambda: _autoscaler_when(
                        cp, namespace, lambda _, c: "TooManyReplicas" in c.get("message", "")
                    ),
                    what="the Chute's Autoscaling condition quoting TooManyReplicas",
                    timeout=30,
                )
                assert (autoscaling["status"], autoscaling["reason"]) == ("True", "ScalingActive")
                assert view["desiredReplicas"] == MAX_INSTANCES, view
                assert view["currentReplicas"] == MAX_INSTANCES, view
                held = time.monotonic() + 16  # one more HPA sync while it still wants more
                while time.monotonic() < held:
                    time.sleep(1)
            finally:
                load.close()
            idle = time.monotonic()
            eventually(
                lambda: (get(cp, "deployment", "busy", namespace) or {}).get("spec", {}).get("replicas") == 1,
                what="back to 1 replica after the window",
                timeout=WINDOW + 60,
            )
            down = time.monotonic() - idle
            view, _ = eventually(
                lambda: _autoscaler_when(cp, namespace, lambda v, _: v.get("desiredReplicas") == 1),
                what="the Chute's status.autoscaler at 1",
                timeout=30,
            )
        assert sampler.samples, f"no sample ({sampler.errors} errors)"
        assert sampler.saw_limited("TooManyReplicas")
        assert sampler.most("replicas") == MAX_INSTANCES, sampler.samples
        assert sampler.most("desired") <= MAX_INSTANCES, sampler.samples
        assert sampler.most("pods") <= MAX_INSTANCES, sampler.samples
        # Not before the window: the HPA keeps its highest recommendation of the last 60 s.
        assert down > WINDOW - 16, f"scaled down {down:.0f}s after the load ended"
