"""GPU-safe rollouts: the stuck surge is detected from the live objects, the budget follows the strategy."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.api import Chute
from chute_operator.gpus import builtin_catalog
from chute_operator.render import render_workload
from chute_operator.rollout import REPLACE, SURGE, RolloutObservation, budget, observe
from chute_operator.workload import RenderOptions, resolve

NO_GPU = (
    "0/9 nodes are available: 2 Insufficient nvidia.com/gpu, 7 node(s) didn't match Pod's node "
    "affinity/selector. preemption: 0/9 nodes are available: 2 No preemption victims found for "
    "incoming pod, 7 Preemption is not helpful for scheduling."
)


def _deployment(
    replicas: int = 2, updated: int = 2, available: int = 2, total: int | None = None, budget=(1, 0)
) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {
            "replicas": replicas,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": budget[0], "maxUnavailable": budget[1]},
            },
        },
        "status": {
            "observedGeneration": 2,
            "replicas": replicas if total is None else total,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "readyReplicas": available,
        },
    }


def _running(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    }


def _pending(name: str, message: str = NO_GPU, since: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": since,
    }
    return {"metadata": {"name": name}, "status": {"phase": "Pending", "conditions": [scheduled]}}


def test_a_surge_pod_without_a_gpu_during_a_rollout_is_blocked() -> None:
    seen = observe(_deployment(updated=1, total=3), [_running("a"), _running("b"), _pending("new")])
    assert (seen.replicas, seen.in_progress, seen.surge_blocked, seen.replacing) == (2, True, True, False)
    assert seen.gpu_starved == ["new"]


def test_a_new_chute_that_does_not_fit_is_not_a_blocked_surge() -> None:
    seen = observe(_deployment(updated=2, available=0), [_pending("a"), _pending("b")])
    assert not seen.surge_blocked


def test_a_scale_up_pod_without_a_gpu_is_not_a_blocked_surge() -> None:
    seen = observe(
        _deployment(replicas=3, updated=3, available=2), [_running("a"), _running("b"), _pending("c")]
    )
    assert seen.in_progress
    assert not seen.surge_blocked


def test_a_pod_unschedulable_for_another_reason_is_not_a_lack_of_gpus() -> None:
    other = _pending("new", "0/9 nodes are available: 9 Insufficient memory.")
    assert not observe(_deployment(updated=1, total=3), [_running("a"), _running("b"), other]).surge_blocked


def test_a_deleted_pod_does_not_count() -> None:
    gone = _running("old")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    seen = observe(_deployment(updated=1, total=2), [gone, _running("b"), _pending("new")])
    assert not seen.surge_blocked


def test_replacing_lasts_while_the_rollout_is_under_way() -> None:
    assert observe(_deployment(updated=1, available=1, budget=REPLACE), []).replacing
    assert not observe(_deployment(budget=REPLACE), []).replacing


def _seen(replicas: int, blocked: bool = False, replacing: bool = False) -> RolloutObservation:
    return RolloutObservation(replicas, True, blocked, replacing, ["new"] if blocked else [])


@pytest.mark.parametrize(
    ("strategy", "seen", "expected", "stuck"),
    [
        ("Auto", None, SURGE, False),
        ("Auto", _seen(2), SURGE, False),
        ("Auto", _seen(2, blocked=True), REPLACE, False),
        ("Auto", _seen(2, replacing=True), REPLACE, False),
        ("Auto", _seen(1, blocked=True), SURGE, True),
        ("Surge", _seen(3, blocked=True), SURGE, True),
        ("Replace", None, REPLACE, False),
        ("Replace", _seen(1, blocked=True), REPLACE, False),
    ],
)
def test_budget_per_strategy(
    strategy: Any, seen: RolloutObservation | None, expected: tuple[int, int], stuck: bool
) -> None:
    assert budget(strategy, seen) == expected
    assert (budget(strategy, seen) == SURGE and bool(seen and seen.surge_blocked)) is stuck


def _rendered_strategy(spec: dict[str, Any], seen: RolloutObservation | None = None) -> dict[str, Any]:
    chute = Chute.model_validate(
        {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"image": "i", **spec}}
    )
    manifests = render_workload(resolve(chute, RenderOptions(catalog=builtin_catalog()), seen))
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    return dict(deployment["spec"]["strategy"])


def test_the_default_is_auto_and_renders_a_surge() -> None:
    assert (
        Chute.model_validate({"metadata": {"name": "m"}, "spec": {"image": "i"}}).spec.rollout.strategy
        == "Auto"
    )
    assert _rendered_strategy({}) == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_replace_renders_one_unavailable_and_no_surge() -> None:
    rolling = _rendered_strategy({"rollout": {"strategy": "Replace"}})["rollingUpdate"]
    assert rolling == {"maxSurge": 0, "maxUnavailable": 1}


def test_auto_falls_back_to_replacing_when_the_surge_is_blocked() -> None:
    rolling = _rendered_strategy({"maxInstances": 2, "minInstances": 2}, _seen(2, blocked=True))[
        "rollingUpdate"
    ]
    assert rolling == {"maxSurge": 0, "maxUnavailable": 1}
