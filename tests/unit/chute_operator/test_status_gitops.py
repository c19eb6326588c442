"""The conditions GitOps tools read: Reconciling/Stalled (kstatus), ScaledToZero, NoSpareGpu."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chute_operator.api import Chute
from chute_operator.gpus import builtin_catalog
from chute_operator.rollout import REPLACE_WAIT_SECONDS, observe
from chute_operator.status import Observation, compute_status
from chute_operator.workload import RenderOptions, resolve
from tests.unit.chute_operator.test_rollout import NO_GPU, _deployment, _pending, _running

NOW = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
"""A minute after the pods in tests.unit.chute_operator.test_rollout were refused by the scheduler."""


def _workload(strategy: str = "Auto", replicas: int = 2, seen: Any = None) -> Any:
    chute = Chute.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {
                "image": "i",
                "nodeSelector": {"gpuCount": 4, "include": ["l40s"]},
                "minInstances": max(replicas, 1),
                "maxInstances": max(replicas, 1),
                "replicas": replicas,
                "rollout": {"strategy": strategy},
            },
        }
    )
    return resolve(chute, RenderOptions(catalog=builtin_catalog()), seen)


def _ready_pod(name: str) -> dict[str, Any]:
    pod = _running(name)
    pod["status"]["conditions"].append({"type": "Ready", "status": "True"})
    pod["status"]["containerStatuses"] = [{"name": "model", "ready": True, "started": True, "state": {}}]
    return pod


def _conditions(
    deployment: dict[str, Any], pods: list[dict[str, Any]], strategy: str = "Auto", now: datetime = NOW
) -> dict[str, Any]:
    seen = observe(deployment, pods)
    replicas = deployment["spec"]["replicas"]
    obs = Observation(
        generation=2,
        selector="chutes.ai/chute=m",
        workload=_workload(strategy, replicas, seen),
        deployment=deployment,
        pods=pods,
        rollout=seen,
    )
    return {c["type"]: c for c in compute_status(obs, now)["conditions"]}


def _pair(c: dict[str, Any]) -> tuple[str, str]:
    return c["status"], c["reason"]


def test_a_serving_chute_is_neither_reconciling_nor_stalled() -> None:
    found = _conditions(_deployment(), [_ready_pod("a"), _ready_pod("b")])
    assert _pair(found["Ready"]) == ("True", "Serving")
    assert _pair(found["Reconciling"]) == ("False", "Reconciled")
    assert _pair(found["Stalled"]) == ("False", "AsExpected")


def test_a_rollout_is_reconciling_with_readys_reason_and_message() -> None:
    found = _conditions(
        _deployment(updated=1, total=3, available=2), [_ready_pod("a"), _ready_pod("b"), _running("c")]
    )
    assert found["Reconciling"]["status"] == "True"
    assert (found["Reconciling"]["reason"], found["Reconciling"]["message"]) == (
        found["Ready"]["reason"],
        found["Ready"]["message"],
    )
    assert found["Stalled"]["status"] == "False"


def test_a_failure_is_stalled_with_degradeds_reason_and_never_reconciling() -> None:
    found = _conditions(
        _deployment(available=0), [_pending("a", "0/9 nodes are available: 9 Insufficient cpu.")]
    )
    assert _pair(found["Stalled"]) == ("True", "Unschedulable")
    assert found["Stalled"]["message"] == found["Degraded"]["message"]
    assert _pair(found["Reconciling"]) == ("False", "Reconciled")


def test_scaled_to_zero_is_ready_and_not_available() -> None:
    deployment = _deployment(replicas=0, updated=0, available=0)
    found = _conditions(deployment, [])
    assert _pair(found["Ready"]) == ("True", "ScaledToZero")
    assert _pair(found["Available"]) == ("False", "ScaledToZero")
    assert found["Reconciling"]["status"] == found["Stalled"]["status"] == "False"


def test_one_replica_with_a_surge_pod_and_no_spare_gpu_reports_no_spare_gpu() -> None:
    deployment = _deployment(replicas=1, updated=0, available=1, total=2)
    found = _conditions(deployment, [_ready_pod("old"), _pending("new")])
    assert _pair(found["Progressing"]) == ("False", "NoSpareGpu")
    assert _pair(found["Degraded"]) == ("True", "NoSpareGpu")
    assert _pair(found["Stalled"]) == ("True", "NoSpareGpu")
    assert _pair(found["Available"]) == ("True", "MinimumReplicasAvailable")
    message = found["Progressing"]["message"]
    assert "4 free GPU(s) of: l40s" in message
    assert "(new)" in message
    assert "spec.rollout.strategy: Replace" in message


@pytest.mark.parametrize("strategy", ["Auto", "Replace"])
def test_a_new_pod_waiting_for_the_gpu_its_predecessor_frees_is_progress(strategy: str) -> None:
    deployment = _deployment(replicas=2, updated=1, available=1, total=3)
    found = _conditions(deployment, [_ready_pod("a"), _ready_pod("b"), _pending("new", NO_GPU)], strategy)
    assert found["Degraded"]["status"] == "False"
    assert _pair(found["Progressing"]) == ("True", "RollingOut")
    assert found["Reconciling"]["status"] == "True"


def test_surge_strategy_with_no_spare_gpu_reports_it_whatever_the_replicas() -> None:
    deployment = _deployment(replicas=2, updated=0, available=2, total=3)
    found = _conditions(deployment, [_ready_pod("a"), _ready_pod("b"), _pending("new")], "Surge")
    assert _pair(found["Progressing"]) == ("False", "NoSpareGpu")


def test_a_new_pod_waiting_too_long_for_a_freed_gpu_is_unschedulable_after_all() -> None:
    deployment = _deployment(replicas=2, updated=1, available=1, total=3)
    pods = [_ready_pod("a"), _ready_pod("b"), _pending("new", NO_GPU)]
    later = NOW + timedelta(seconds=REPLACE_WAIT_SECONDS)
    found = _conditions(deployment, pods, "Replace", now=later)
    assert _pair(found["Degraded"]) == ("True", "Unschedulable")
