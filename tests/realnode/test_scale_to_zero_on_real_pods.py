"""Scale to zero on real pods: the session control plane's real node (kubelet, containerd, kube-proxy).

Idle for shutdownAfterSeconds (60 s, the least the CRD accepts), the real pod is terminated and
removed; a request sent to the Chute Service's ClusterIP while at zero reaches a real activator
process through kube-proxy and the operator's ``NAME-activator`` EndpointSlice, wakes the Chute,
and is answered 200 once the restarted model has loaded (tests/scale_to_zero_harness.py has the
setup; benchmarks/scale_to_zero.py measures it). About two minutes, most of it the idle window.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chute_operator.devcluster.controlplane import ControlPlane
from chute_operator.devcluster.realnode import RealNode
from tests.scale_to_zero_harness import STAGES, run

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(600)]

LOAD_SECONDS = 2.0


def test_an_idle_real_pod_goes_and_a_request_to_its_service_at_zero_is_answered_after_the_model_loads(
    control_plane: ControlPlane,
    real_node: RealNode,
    chute_crd: Path,
    namespace: str,
    session_operator_paused: None,
    tmp_path: Path,
) -> None:
    image = real_node.images[0].ref
    (result,) = run(
        control_plane, tmp_path, image, 1, LOAD_SECONDS, namespace, own_namespace=False, through_service=True
    )
    assert result["status"] == 200
    assert result["request_at_zero_answered_s"] >= LOAD_SECONDS  # held through the load, not refused
    # The breakdown the benchmark reports is complete, and in the order things happen.
    stages = result["stages_s"]
    assert set(stages) == {name for name, _ in STAGES}, stages
    assert stages["held"] <= stages["wake_written"] <= stages["pod_created"] <= stages["model_loaded"], stages
    assert stages["model_loaded"] <= stages["activator_ready_seen"] <= stages["forwarded"], stages
    assert stages["forwarded"] <= stages["answered"] <= stages["client_answered"], stages
