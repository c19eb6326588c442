"""The drain on real pods: only the kubelet's preStop hook can start it, and when the kubelet restarts
a hung model (liveness), the drain it started ends once the model is back (issue 9, items 1 and 2).

Traffic goes only from this machine to the real node's pod IPs and ClusterIPs; every client is bounded.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.kube_helpers import condition, eventually, get, service_url
from tests.operator_fixtures import OperatorProcess
from tests.realnode.conftest import (
    chat,
    container_status,
    deploy,
    http,
    real_chute,
    running_pods,
    wait_serving,
)

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(600)]

ADMIN_PORT = 9091


def _restarts(pod: dict[str, Any]) -> int:
    return int(container_status(pod, "model").get("restartCount", 0))


def _sidecar_log(cp: ControlPlane, pod: dict[str, Any], namespace: str) -> str:
    return cp.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "chute-sidecar").stdout


def test_only_the_hook_drains_and_a_liveness_restart_ends_the_drain(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    args = ["--load-seconds", "5", "--hang-after-requests", "1", "--fault-once-file", "/cache/hung"]
    deploy(cp, real_chute("hangs", project_image, args), namespace)
    pod = wait_serving(cp, "hangs", namespace, timeout=120)
    service = get(cp, "service", "hangs", namespace)
    assert ADMIN_PORT not in [port["port"] for port in service["spec"]["ports"]]

    # From this machine (as from another pod where no NetworkPolicy is enforced): no token, no drain.
    admin = f"http://{pod['status']['podIP']}:{ADMIN_PORT}"
    assert http(f"{admin}/drainz").status == 403
    assert http(f"{admin}/drainz", headers={"X-Chute-Drain-Token": "guess"}).status == 403
    assert http(f"{admin}/readyz").status == 200

    url = service_url(cp, "hangs", namespace)
    assert chat(url).status == 200  # the model answers, then hangs: /health too
    # liveness (/modelz) fails; the kubelet runs the preStop hook (/drainz with the token), restarts
    pod = eventually(
        lambda: next((p for p in running_pods(cp, "hangs", namespace) if _restarts(p) == 1), None),
        what="the liveness restart",
        timeout=240,
    )
    deadline = time.monotonic() + 120
    while condition(pod, "Ready").get("status") != "True":  # the drain must not outlive the old model
        assert time.monotonic() < deadline, "the pod stayed unready after the model came back"
        time.sleep(1)
        pod = eventually(lambda: next(iter(running_pods(cp, "hangs", namespace)), None), what="the pod")
    assert _restarts(pod) == 1
    service_url(cp, "hangs", namespace)  # the Service's endpoints trail the pod's readiness
    assert chat(url).status == 200
    log = _sidecar_log(cp, pod, namespace)
    assert "draining before the model stops" in log  # the hook did drain, with its token
    assert "model container back after a restart: drain over" in log
    assert "drain refused" in log  # the two tries above
