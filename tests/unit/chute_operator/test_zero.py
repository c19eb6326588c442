"""Scale to zero and back, as pure rules: when to sleep, when to wake, when the activator is in the path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chute_operator.api import Chute
from chute_operator.gpus import builtin_catalog
from chute_operator.status import Observation, compute_status
from chute_operator.workload import RenderOptions, Workload, resolve
from chute_operator.zero import (
    ASLEEP_ANNOTATION,
    WAKE_ANNOTATION,
    Action,
    Activator,
    Reading,
    activator_from_slices,
    activator_slice,
    confirmed_idle,
    decide,
    sleep_manifest,
    wake_manifest,
    wants_activator,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ACTIVATOR = Activator(("10.244.0.7", "10.244.0.8"))


def _workload(min_instances: int = 0, **options: Any) -> Workload:
    chute = Chute.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "image": "i",
                "minInstances": min_instances,
                "maxInstances": 3,
                "shutdownAfterSeconds": 60,
            },
        }
    )
    return resolve(chute, RenderOptions(catalog=builtin_catalog(), **options))


def _deployment(replicas: int, asleep_at: str | None = None) -> dict[str, Any]:
    annotations = {ASLEEP_ANNOTATION: asleep_at} if asleep_at else {}
    return {
        "metadata": {"name": "m", "namespace": "ns", "annotations": annotations},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def _pod(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def _chute(wake_at: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "m",
            "namespace": "ns",
            "annotations": {WAKE_ANNOTATION: wake_at} if wake_at else {},
        }
    }


def idle(seconds: dict[str, float | None]) -> Any:
    return lambda namespace, pod: seconds.get(pod)


def test_every_replica_idle_for_the_window_goes_to_zero() -> None:
    pods = [_pod("a"), _pod("b")]
    decision = decide(_workload(), _chute(), _deployment(2), pods, idle({"a": 61, "b": 60}), ACTIVATOR)
    assert decision is Action.SLEEP


@pytest.mark.parametrize(
    ("idle_seconds", "pods"),
    [
        ({"a": 61, "b": 59}, [_pod("a"), _pod("b")]),  # one replica served within the window
        ({"a": 61, "b": None}, [_pod("a"), _pod("b")]),  # one is busy (or has no fresh reading)
        ({"a": 61, "b": 61}, [_pod("a"), _pod("b", ready=False)]),  # one is still loading
        ({}, []),  # nothing measured
    ],
)
def test_a_replica_that_is_busy_recent_unready_or_unmeasured_keeps_the_chute_up(
    idle_seconds: dict[str, float | None], pods: list[dict[str, Any]]
) -> None:
    assert decide(_workload(), _chute(), _deployment(2), pods, idle(idle_seconds), ACTIVATOR) is Action.STAY


def test_never_to_zero_without_min_instances_0_or_without_a_ready_activator() -> None:
    pods, quiet = [_pod("a")], idle({"a": 1000})
    assert decide(_workload(1), _chute(), _deployment(1), pods, quiet, ACTIVATOR) is Action.STAY
    assert decide(_workload(), _chute(), _deployment(1), pods, quiet, None) is Action.STAY
    assert decide(_workload(), _chute(), _deployment(1), pods, quiet, Activator(())) is Action.STAY
    # the HPA goes to zero itself (HPAScaleToZero): not ours
    hpa_zero = _workload(hpa_scale_to_zero=True)
    assert decide(hpa_zero, _chute(), _deployment(1), pods, quiet, ACTIVATOR) is Action.STAY


def test_a_wake_request_newer_than_the_sleep_wakes_and_an_older_one_does_not() -> None:
    asleep = _deployment(0, "2026-01-01T11:00:00.000000Z")
    assert (
        decide(_workload(), _chute("2026-01-01T11:00:05.5Z"), asleep, [], idle({}), ACTIVATOR) is Action.WAKE
    )
    assert decide(_workload(), _chute("2026-01-01T10:59:00Z"), asleep, [], idle({}), ACTIVATOR) is Action.STAY
    assert decide(_workload(), _chute(), asleep, [], idle({}), ACTIVATOR) is Action.STAY


def test_a_chute_no_longer_allowed_at_zero_wakes_and_one_at_zero_by_hand_is_left_alone() -> None:
    asleep = _deployment(0, "2026-01-01T11:00:00Z")
    assert decide(_workload(1), _chute(), asleep, [], idle({}), ACTIVATOR) is Action.WAKE
    by_hand = _deployment(0)
    assert (
        decide(_workload(), _chute("2026-01-01T11:00:05Z"), by_hand, [], idle({}), ACTIVATOR) is Action.STAY
    )


def test_sleep_sets_replicas_and_the_marker_and_wake_applies_neither() -> None:
    sleep = sleep_manifest(_deployment(2), NOW)
    assert sleep["spec"] == {"replicas": 0}
    assert sleep["metadata"]["annotations"] == {ASLEEP_ANNOTATION: "2026-01-01T12:00:00.000000Z"}
    wake = wake_manifest(_deployment(0, "x"))
    assert set(wake) == {"apiVersion", "kind", "metadata"}  # the manager's fields go; replicas defaults to 1
    assert wake["metadata"] == {"name": "m", "namespace": "ns"}


def test_the_activator_is_in_the_path_only_while_nothing_serves() -> None:
    workload = _workload()
    assert wants_activator(workload, _deployment(0, "2026-01-01T11:00:00Z"), [_pod("a")])  # going to zero
    assert wants_activator(workload, _deployment(1), [_pod("a", ready=False)])  # waking, still loading
    assert not wants_activator(workload, _deployment(1), [_pod("a")])  # a replica serves
    assert not wants_activator(_workload(1), _deployment(0, "x"), [])


def test_the_activator_slice_joins_the_chutes_service_and_is_left_alone_by_the_slice_controller() -> None:
    piece = activator_slice(_workload(), ACTIVATOR, 20007)
    labels = piece["metadata"]["labels"]
    assert piece["metadata"]["name"] == "m-activator"
    assert labels["kubernetes.io/service-name"] == "m"
    assert labels["endpointslice.kubernetes.io/managed-by"] == "chute-operator"
    assert piece["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert piece["ports"] == [{"name": "http", "port": 20007, "protocol": "TCP"}]
    assert [e["addresses"] for e in piece["endpoints"]] == [["10.244.0.7"], ["10.244.0.8"]]


def test_the_activators_pods_come_from_its_services_slices() -> None:
    slices = [
        {
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.244.0.8"], "conditions": {"ready": True}},
                {"addresses": ["10.244.0.9"], "conditions": {"ready": False}},
                {"addresses": ["10.244.0.7"], "conditions": {}},
            ],
        }
    ]
    assert activator_from_slices(slices) == ACTIVATOR
    assert activator_from_slices([]) is None


def test_a_chute_at_zero_because_idle_is_ready_suspended_for_gitops_and_its_autoscaler_is_not_a_failure() -> (
    None
):
    workload = _workload()
    hpa = {
        "status": {"conditions": [{"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled"}]}
    }
    observation = Observation(
        generation=1,
        selector="chutes.ai/chute=m",
        workload=workload,
        deployment=_deployment(0, "2026-01-01T11:00:00Z"),
        pods=[],
        hpa=hpa,
    )
    conditions = {c["type"]: c for c in compute_status(observation, NOW)["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "ScaledToZero")
    assert (conditions["Available"]["status"], conditions["Available"]["reason"]) == ("False", "ScaledToZero")
    assert (conditions["Autoscaling"]["status"], conditions["Autoscaling"]["reason"]) == (
        "True",
        "ScaledToZero",
    )
    assert "next request wakes it" in conditions["Available"]["message"]


def _read(idle_seconds: float | None, age: float) -> Reading:
    return Reading(idle_seconds, NOW - timedelta(seconds=age))


def test_only_a_reading_taken_after_the_window_ended_and_just_now_confirms_a_sleep() -> None:
    """The metrics API's reading is up to 10 s old: a request that began since is invisible in it
    (issue 25). A sleep needs each sidecar read just now, saying itself it was idle for the window."""
    pods = [_pod("a"), _pod("b")]
    assert confirmed_idle(pods, {"a": _read(61, 0.1), "b": _read(60, 0.05)}, 60, NOW)
    # b's request began just before the window ended: busy, or idle only since it ended
    assert not confirmed_idle(pods, {"a": _read(61, 0.1), "b": _read(None, 0.1)}, 60, NOW)
    assert not confirmed_idle(pods, {"a": _read(61, 0.1), "b": _read(0.4, 0.1)}, 60, NOW)
    # idle for the window when read, but read 8 s ago: a request since would be invisible
    assert not confirmed_idle(pods, {"a": _read(61, 0.1), "b": _read(68, 8.0)}, 60, NOW)
    # not read, not ready, no pods
    assert not confirmed_idle(pods, {"a": _read(61, 0.1)}, 60, NOW)
    unready = [_pod("a"), _pod("b", ready=False)]
    assert not confirmed_idle(unready, {"a": _read(61, 0.1), "b": _read(61, 0.1)}, 60, NOW)
    assert not confirmed_idle([], {}, 60, NOW)
