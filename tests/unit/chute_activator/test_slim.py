"""What the activator keeps of each object (chute_activator.slim), and proof that every reader of
chute_activator.derive still finds its fields.

The objects are a fleet benchmark's Chutes, asleep and awake, with their EndpointSlices and a pod, as
the API server and kwok made them (tests/data/activator/fleet-objects.json: ``kubectl get -o json
--show-managed-fields``). Each reader runs on the full object and on its slimmed copy and must
answer the same, for the captured objects and for the states derived from them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chute_activator.derive import chute_of, chute_state, key_of, ready_endpoints, serving_address
from chute_activator.slim import slim_chute, slim_pod, slim_slice
from chute_shared import reasons
from chute_shared.cluster import SIDECAR_CONTAINER

CAPTURED = json.loads((Path(__file__).parents[2] / "data" / "activator" / "fleet-objects.json").read_text())
Obj = dict[str, Any]


def _changed(obj: Obj, change: Callable[[Obj], None]) -> Obj:
    changed = copy.deepcopy(obj)
    change(changed)
    return changed


def _degraded(reason: str) -> Callable[[Obj], None]:
    def change(chute: Obj) -> None:
        chute["status"].setdefault("conditions", []).append(
            {"type": reasons.DEGRADED, "status": "True", "reason": reason, "message": "a person must act"}
        )

    return change


CHUTE_STATES: list[Callable[[Obj], None]] = [
    lambda c: None,
    _degraded(reasons.IMAGE_PULL_BACK_OFF),
    _degraded("ModelLoading"),
    lambda c: c["metadata"].update(deletionTimestamp="2026-12-07T18:00:00Z"),
    lambda c: c["spec"].update(maxRequestBodyBytes=1024, requestTimeoutSeconds=30),
    lambda c: c["status"].update(loadSeconds=12.5, activatorPort=True),
    lambda c: c.pop("status", None),
]


@pytest.mark.parametrize("state", ["asleep", "awake"])
@pytest.mark.parametrize("change", range(len(CHUTE_STATES)))
def test_a_slimmed_chute_and_its_slices_give_the_same_state(state: str, change: int) -> None:
    chute = _changed(CAPTURED[state]["chute"], CHUTE_STATES[change])
    slices = CAPTURED[state]["slices"]
    for override, early in ((None, ()), ("127.0.0.1:9", ()), (None, ("10.0.0.9:8080",))):
        full = chute_state(chute, slices, override, early)
        assert chute_state(slim_chute(chute), [slim_slice(s) for s in slices], override, early) == full
    assert key_of(slim_chute(chute)) == key_of(chute)


def _sidecar_status(pod: Obj) -> Obj:
    statuses = pod["status"].get("initContainerStatuses") or pod["status"]["containerStatuses"]
    return next(s for s in statuses if s["name"] == SIDECAR_CONTAINER)


POD_STATES: list[Callable[[Obj], None]] = [
    lambda p: None,
    lambda p: p["metadata"].update(deletionTimestamp="2026-12-07T18:00:00Z"),
    lambda p: p["status"].update(phase="Failed"),
    lambda p: p["status"].pop("podIP", None),
    lambda p: _sidecar_status(p).update(state={"waiting": {"reason": "ContainerCreating"}}),
    lambda p: p["status"].update(podIP="fd00::5"),
]


@pytest.mark.parametrize("change", range(len(POD_STATES)))
def test_a_slimmed_pod_gives_the_same_serving_address(change: int) -> None:
    pod = _changed(CAPTURED["awake"]["pod"], POD_STATES[change])
    assert serving_address(slim_pod(pod)) == serving_address(pod)
    assert chute_of(slim_pod(pod)) == chute_of(pod) != ""
    assert key_of(slim_pod(pod)) == key_of(pod)


def test_the_captured_objects_are_what_the_readers_expect() -> None:
    """Guards the fixture: an awake Chute has a ready endpoint and a serving pod, an asleep one none."""
    awake, asleep = CAPTURED["awake"], CAPTURED["asleep"]
    assert ready_endpoints(awake["slices"])
    assert serving_address(awake["pod"])
    assert not ready_endpoints(asleep["slices"])
    assert all(chute_of(s) for s in awake["slices"] + asleep["slices"])


def test_the_activator_keeps_a_fraction_of_each_object() -> None:
    for state in ("asleep", "awake"):
        slices = [(s, slim_slice) for s in CAPTURED[state]["slices"]]
        objects = [(CAPTURED[state]["chute"], slim_chute), *slices]
        full = sum(len(json.dumps(obj)) for obj, _ in objects)
        kept = sum(len(json.dumps(slim(obj))) for obj, slim in objects)
        assert kept < full / 4
    assert len(json.dumps(slim_pod(CAPTURED["awake"]["pod"]))) < len(json.dumps(CAPTURED["awake"]["pod"])) / 4


def test_slimming_odd_objects_never_raises() -> None:
    odd_objects: list[Obj] = [
        {},
        {"metadata": None, "spec": [], "status": "x"},
        {"status": {"conditions": [1, None]}},
    ]
    for odd in odd_objects:
        for slim in (slim_chute, slim_slice, slim_pod):
            assert isinstance(slim(odd), dict)
