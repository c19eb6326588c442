"""``chute-operator explain --plan``: what the operator would do to a live Chute, read from the cluster
with the operator's own settings, and nothing written."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.test_operator import chute, ready_reason, versions, wait_ready
from tests.kube_helpers import apply, eventually
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e


def plan_of(operator: OperatorProcess, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chute_operator", "explain", "--plan", target, "--cluster"],
        capture_output=True,
        text=True,
        check=False,
        env=operator.environment(),  # the operator's kubeconfig and CHUTE_OPERATOR_* settings
        timeout=60,
    )


def test_the_plan_of_a_ready_chute_is_empty_and_writes_nothing(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    cp = control_plane
    apply(cp, chute("planned"), namespace)
    wait_ready(cp, "planned", namespace)
    before = versions(cp, "planned", namespace)
    result = plan_of(operator, f"{namespace}/planned")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Plan for Chute {namespace}/planned (generation 1):"
    for kind in ("NetworkPolicy", "Service", "Deployment"):
        assert f"  {kind} planned: unchanged" in lines
    assert "  nothing to write to the children" in lines
    assert "Status it expects (unchanged):" in lines
    assert any(line.startswith("  Ready True (Serving)") for line in lines)
    assert versions(cp, "planned", namespace) == before


def test_the_plan_names_an_object_in_the_way_and_a_missing_chute(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("create", "service", "clusterip", "taken", "--tcp=5432:5432", "-n", namespace)
    apply(cp, chute("taken"), namespace)
    eventually(lambda: ready_reason(cp, "taken", namespace)[1] == "ChildConflict", what="ChildConflict")
    result = plan_of(operator, f"{namespace}/taken")
    assert result.returncode == 0, result.stderr
    assert (
        "  Service taken: in the way: exists and is not owned by this Chute, left untouched"
        in result.stdout.splitlines()
    )
    missing = plan_of(operator, f"{namespace}/nothing")
    assert missing.returncode == 1
    assert f"no Chute {namespace}/nothing" in missing.stderr
