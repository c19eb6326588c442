"""The generated CRD on a real kube-apiserver: examples accepted, invalid Chutes refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.invalid_chutes import DUPLICATES, INVALID

pytestmark = pytest.mark.integration
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def _dry_run(control_plane: Any, namespace: str, document: dict[str, Any]) -> Any:
    return control_plane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(document), check=False
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_accepted(chute_crd: Any, control_plane: Any, namespace: str, path: Path) -> None:
    result = _dry_run(control_plane, namespace, yaml.safe_load(path.read_text()))
    assert result.returncode == 0, result.stderr


def test_api_server_fills_defaults(chute_crd: Any, control_plane: Any, namespace: str) -> None:
    document = {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": "defaults"},
        "spec": {"image": "x"},
    }
    result = control_plane.kubectl(
        "create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(document)
    )
    spec = json.loads(result.stdout)["spec"]
    assert spec["nodeSelector"] == {"gpuCount": 1, "minVramGbPerGpu": 16}
    assert (spec["template"], spec["maxInstances"], spec["scalingThreshold"]) == ("custom", 1, 0.75)


@pytest.mark.parametrize(
    ("case", "document", "field"), INVALID + DUPLICATES, ids=[case for case, _, _ in INVALID + DUPLICATES]
)
def test_invalid_chutes_are_refused_naming_the_field(
    chute_crd: Any, control_plane: Any, namespace: str, case: str, document: dict[str, Any], field: str
) -> None:
    result = _dry_run(control_plane, namespace, document)
    assert result.returncode != 0, f"{case} was accepted"
    assert field in result.stderr, result.stderr


def test_kubectl_scale_is_refused_on_an_autoscaled_chute_and_sets_replicas_on_a_fixed_one(
    chute_crd: Any, control_plane: Any, namespace: str
) -> None:
    """Through the scale subresource: the CEL rule says why, instead of a silently ignored replicas."""
    for name, low, high in (("auto", 1, 3), ("fixed", 2, 2)):
        document = {
            "apiVersion": "chutes.ai/v1alpha1",
            "kind": "Chute",
            "metadata": {"name": name},
            "spec": {"image": "x", "minInstances": low, "maxInstances": high},
        }
        control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(document))
    refused = control_plane.kubectl("scale", "chute", "auto", "--replicas=2", "-n", namespace, check=False)
    assert refused.returncode != 0
    assert "applies only when minInstances == maxInstances" in refused.stderr, refused.stderr
    control_plane.kubectl("scale", "chute", "fixed", "--replicas=1", "-n", namespace)
    replicas = control_plane.kubectl(
        "get", "chute", "fixed", "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    )
    assert replicas.stdout == "1"
