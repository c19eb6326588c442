"""GitOps stays in sync: after `kubectl apply` of every example, `kubectl diff` is empty and a second
apply changes nothing, client-side and server-side, with the operator running (issue 13, item 3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.kube_helpers import eventually, get
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MODES = {"client-side": (), "server-side": ("--server-side",)}


def chute_names(example: Path, cp: Any, namespace: str) -> list[str]:
    names = cp.kubectl("get", "-f", str(example), "-n", namespace, "-o", "name").stdout.split()
    return [name.split("/", 1)[1] for name in names]


def resource_versions(cp: Any, names: list[str], namespace: str) -> dict[str, str]:
    found = {name: get(cp, "chute", name, namespace) for name in names}
    return {name: chute["metadata"]["resourceVersion"] for name, chute in found.items() if chute}


def settled(cp: Any, names: list[str], namespace: str) -> dict[str, str] | None:
    """The Chutes' resourceVersions once the operator has observed them and stopped writing."""
    for name in names:
        chute = get(cp, "chute", name, namespace) or {}
        status = chute.get("status") or {}
        if status.get("observedGeneration") != chute.get("metadata", {}).get("generation"):
            return None
    before = resource_versions(cp, names, namespace)
    time.sleep(1.5)
    return before if resource_versions(cp, names, namespace) == before else None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_an_applied_example_shows_no_diff_and_a_second_apply_changes_nothing(
    operator: OperatorProcess, control_plane: Any, namespace: str, example: Path, mode: str
) -> None:
    flags = MODES[mode]
    control_plane.kubectl("apply", *flags, "-n", namespace, "-f", str(example))
    names = chute_names(example, control_plane, namespace)
    before = eventually(
        lambda: settled(control_plane, names, namespace), "the operator to settle", timeout=120
    )

    diff = control_plane.kubectl("diff", *flags, "-n", namespace, "-f", str(example), check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout or diff.stderr

    again = control_plane.kubectl("apply", *flags, "-n", namespace, "-f", str(example)).stdout
    assert all(line.endswith(("unchanged", "serverside-applied")) for line in again.splitlines()), again
    assert resource_versions(control_plane, names, namespace) == before
