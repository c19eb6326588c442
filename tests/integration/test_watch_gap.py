"""A watch cut while an object is deleted: the operator forgets it and acts at once (real kube-apiserver).

The kube-apiserver is stopped, a Chute's Deployment is deleted from etcd meanwhile (no watch can see
it: no DELETED event reaches anyone), and the kube-apiserver is started again. The operator's watch
cannot resume from its old resourceVersion, kopf lists Deployments again, and the operator's store
must forget the Deployment and re-create it within seconds, not at its periodic resync (600 s).
A control plane of this module's own (restarting the session's would disturb other tests).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.faults import apply_chutes, chaos_chute, plane_of_its_own, wait_for
from tests.operator_fixtures import OperatorProcess

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.nodes import NodePool

pytestmark = pytest.mark.integration
NAMESPACE = "gap"


@pytest.fixture(scope="module")
def gap_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    pool = NodePool("cpu", 1, "gap.cpu", "8", "32Gi", "1Ti", pods=50)
    yield from plane_of_its_own(tmp_path_factory.mktemp("gap-plane"), pool, NAMESPACE)


def _etcd_delete(plane: ControlPlane, key: str) -> int:
    """Delete one key from etcd directly (its v3 JSON gateway on loopback); how many were deleted."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    url = f"http://127.0.0.1:{plane.etcd_port}/v3/kv/deleterange"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as answer:
        return int(json.loads(answer.read()).get("deleted", 0))


def _deployment_uid(plane: ControlPlane, name: str) -> str:
    """The Deployment's uid, empty when there is none."""
    found = plane.kubectl(
        "get", "deployment", name, "-n", NAMESPACE, "-o", "jsonpath={.metadata.uid}", check=False, timeout=30
    )
    return found.stdout.strip() if found.returncode == 0 else ""


def test_a_deployment_deleted_while_the_watch_was_cut_is_recreated_before_the_resync(
    gap_plane: ControlPlane, tmp_path: Path
) -> None:
    operator = OperatorProcess(gap_plane.kubeconfig, tmp_path, "gap", namespaces=(NAMESPACE,)).start()
    try:
        apply_chutes(gap_plane, [chaos_chute("llm", NAMESPACE)])
        wait_for(lambda: bool(_deployment_uid(gap_plane, "llm")), 60, "the Deployment")
        first = _deployment_uid(gap_plane, "llm")
        time.sleep(3)  # the operator has seen it: its store holds it
        deleted: list[int] = []
        gap_plane.restart(
            "kube-apiserver",
            while_down=lambda: deleted.append(
                _etcd_delete(gap_plane, f"/registry/deployments/{NAMESPACE}/llm")
            ),
        )
        assert deleted == [1]
        wait_for(
            lambda: _deployment_uid(gap_plane, "llm") not in ("", first), 60, "the Deployment re-created"
        )
    finally:
        operator.stop()
