"""The operator renders what the API server keeps, whichever Kubernetes the session runs
(``CHUTE_OPERATOR_KUBERNETES_VERSION``; docs/compatibility.md): the HPA's tolerance, or a Chute that
says it cannot have it and is served all the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.test_operator import chute, events, wait_ready
from tests.kube_helpers import apply, condition, eventually, get
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e

PROBE = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "tolerance-probe"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "none"},
        "minReplicas": 1,
        "maxReplicas": 2,
        "behavior": {"scaleUp": {"tolerance": "0"}},
    },
}


def server_keeps_tolerance(cp: Any, namespace: str) -> bool:
    """The test's own look: what the API server would store for an HPA that sets the tolerance."""
    stored = cp.kubectl(
        "create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(PROBE)
    )
    return "tolerance" in (json.loads(stored.stdout)["spec"].get("behavior") or {}).get("scaleUp", {})


def test_the_hpa_has_the_tolerance_where_the_server_keeps_it_else_the_chute_says_so(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    kept = server_keeps_tolerance(control_plane, namespace)
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    minor = int(version["minor"].rstrip("+"))
    assert kept is (minor >= 35), f"{version['gitVersion']} keeps the tolerance: {kept}"
    apply(control_plane, chute("scaled", minInstances=1, maxInstances=3, scalingThreshold=0.5), namespace)
    found = wait_ready(control_plane, "scaled", namespace)
    hpa = eventually(lambda: get(control_plane, "horizontalpodautoscaler", "scaled", namespace), what="HPA")
    scale_up = hpa["spec"]["behavior"]["scaleUp"]
    supported = condition(found, "Supported")
    if kept:
        assert scale_up.get("tolerance") == "0"
        assert supported == {}
        return
    assert "tolerance" not in scale_up
    assert (supported["status"], supported["reason"]) == ("False", "FieldUnsupported")
    assert "spec.scalingThreshold" in supported["message"]
    assert version["gitVersion"] in supported["message"]
    assert condition(found, "Ready")["status"] == "True"
    assert condition(found, "Degraded")["status"] == "False"
    warned = [e for e in events(control_plane, "scaled", namespace) if e["reason"] == "FieldUnsupported"]
    assert [e["type"] for e in warned] == ["Warning"]
    assert all(e["reason"] != "ApplyFailed" for e in events(control_plane, "scaled", namespace))
