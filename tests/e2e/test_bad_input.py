"""The held bad-input corpus against a running operator: refused or InvalidSpec, never a crash, no harm done.

tests/invalid_chutes.py holds the corpus. The API server refuses INVALID and DUPLICATES (each case by
name in tests/integration/test_crd_validation.py); here they are applied for real, beside the cases only
the operator can judge (JUDGED_BY_OPERATOR), while a valid neighbour in the same namespace is watched.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.e2e.test_operator import chute, ready_reason, versions, wait_ready
from tests.invalid_chutes import DUPLICATES, INVALID, JUDGED_BY_OPERATOR
from tests.kube_helpers import eventually, items
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e


def _as_case(case: str, document: dict[str, Any]) -> dict[str, Any]:
    """The document named after its case, unless its name is what it tests."""
    renamed = copy.deepcopy(document)
    if renamed["metadata"]["name"] == "invalid":
        renamed["metadata"]["name"] = case
    return renamed


def _apply_all(control_plane: Any, namespace: str, documents: list[dict[str, Any]]) -> Any:
    stream = "\n---\n".join(json.dumps(d) for d in documents)
    return control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=stream, check=False)


def test_the_bad_input_corpus_is_refused_or_invalid_spec_and_harms_no_neighbour(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    assert len(INVALID) + len(DUPLICATES) + len(JUDGED_BY_OPERATOR) >= 60
    log_start = operator.log_path.stat().st_size
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(chute("neighbour")))
    wait_ready(control_plane, "neighbour", namespace)
    before = versions(control_plane, "neighbour", namespace)
    before.pop("chute")

    refused = _apply_all(control_plane, namespace, [_as_case(c, d) for c, d, _ in INVALID + DUPLICATES])
    assert refused.returncode != 0
    judged = _apply_all(control_plane, namespace, [_as_case(c, d) for c, d, _ in JUDGED_BY_OPERATOR])
    assert judged.returncode == 0, judged.stderr
    names = {c["metadata"]["name"] for c in items(control_plane, "chute", namespace)}
    assert names == {"neighbour", *(case for case, _, _ in JUDGED_BY_OPERATOR)}

    for case, _, field in JUDGED_BY_OPERATOR:
        status, _reason, message = eventually(
            lambda case=case: (r := ready_reason(control_plane, case, namespace))[1] == "InvalidSpec" and r,
            what=f"{case}: Ready=False InvalidSpec",
        )
        assert status == "False"
        assert field in message, f"{case}: {message}"
    children = [i["metadata"]["name"] for i in items(control_plane, "deployment", namespace)]
    assert children == ["neighbour"]

    assert ready_reason(control_plane, "neighbour", namespace)[0] == "True"
    after = versions(control_plane, "neighbour", namespace)
    after.pop("chute")
    assert after == before
    assert operator.process is not None
    assert operator.process.poll() is None
    with operator.log_path.open("rb") as log:
        log.seek(log_start)
        written = log.read().decode(errors="replace")
    assert "Traceback" not in written, written[-4000:]
