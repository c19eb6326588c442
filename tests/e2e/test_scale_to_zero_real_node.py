"""Scale to zero on real pods: the local cluster's real node (kubelet, containerd, kube-proxy).

Idle for shutdownAfterSeconds, the real pod is terminated and removed; a request sent to a real
activator process while at zero wakes the Chute and is answered 200 once the restarted model has
loaded (tests/scale_to_zero_harness.py has the setup; benchmarks/scale_to_zero.py measures it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chute_operator.devcluster.binaries import ensure_binaries
from chute_operator.devcluster.controlplane import ControlPlane, ControlPlaneError
from chute_operator.devcluster.realnode import build_node_images
from chute_operator.devcluster.realnode_config import RealNodeSettings
from tests.kube_helpers import eventually
from tests.scale_to_zero_harness import run

# Its own cluster needs the machine's one real node, which the session cluster holds in a default run.
pytestmark = [pytest.mark.realnode, pytest.mark.own_cluster, pytest.mark.timeout(1500)]

LOAD_SECONDS = 5.0
CRD = Path(__file__).resolve().parents[2] / "crds" / "chute.yaml"


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, str]]:
    if os.geteuid() != 0:
        pytest.skip("the real node needs root")
    images = build_node_images()
    plane = ControlPlane(
        work_dir=tmp_path_factory.mktemp("real-cluster"),
        tools=ensure_binaries(),
        real_node=RealNodeSettings.from_env(),
        real_node_images=images,
        real_node_lock_timeout=900,
    )
    try:
        plane.start()
    except (ControlPlaneError, OSError) as error:
        plane.stop()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real node unavailable: {error}")
        pytest.skip(f"real node unavailable: {error}")
    try:
        plane.kubectl("apply", "--server-side", "-f", str(CRD))
        eventually(
            lambda: (
                plane.kubectl(
                    "wait", "--for=condition=Established", "--timeout=5s", "crd/chutes.chutes.ai", check=False
                ).returncode
                == 0
                or None
            ),
            what="CRD established",
        )
        yield plane, images.others[0].ref
    finally:
        plane.stop()


def test_an_idle_real_pod_goes_and_a_request_at_zero_is_answered_after_the_model_loads(
    real_cluster: tuple[ControlPlane, str], tmp_path: Any
) -> None:
    cp, image = real_cluster
    (result,) = run(cp, tmp_path, image, 1, LOAD_SECONDS)  # waits for replicas 0 and the pod gone
    assert result["status"] == 200
    assert result["request_at_zero_answered_s"] >= LOAD_SECONDS  # held through the load, not refused
