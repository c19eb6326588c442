"""Status from the Deployment and every pod: the reason a person needs, from all pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chute_operator.api import Chute
from chute_operator.api.reasons import OOM_RECENT_SECONDS
from chute_operator.gpus import builtin_catalog
from chute_operator.status import Observation, compute_status, pod_problem, status_changed
from chute_operator.workload import RenderOptions, resolve
from tests.hpas import hpa_failing, stamp

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WORKLOAD = resolve(
    Chute.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"image": "i", "nodeSelector": {"gpuCount": 8}},
        }
    ),
    RenderOptions(catalog=builtin_catalog()),
)


def _deployment(replicas: int = 2, ready: int = 2, updated: int = 2, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": updated,
        },
    }


def _pod(name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


def _running(name: str, ready: bool, started: bool = True) -> dict[str, Any]:
    return _pod(
        name,
        phase="Running",
        conditions=[{"type": "Ready", "status": "True" if ready else "False"}],
        containerStatuses=[{"name": "model", "ready": ready, "started": started, "state": {"running": {}}}],
    )


def _status(deployment: dict[str, Any] | None, pods: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    obs = Observation(
        generation=3, selector="chutes.ai/chute=m", workload=WORKLOAD, deployment=deployment, pods=pods
    )
    for key, value in extra.items():
        obs = Observation(**{**obs.__dict__, key: value})
    return compute_status(obs, NOW)


def _condition(status: dict[str, Any], kind: str) -> tuple[str, str]:
    condition = next(c for c in status["conditions"] if c["type"] == kind)
    return condition["status"], condition["reason"]


def test_all_ready_is_ready_with_generation_and_counts() -> None:
    status = _status(_deployment(), [_running("a", True), _running("b", True)])
    assert _condition(status, "Ready") == ("True", "Serving")
    assert _condition(status, "Degraded") == ("False", "AsExpected")
    assert status["observedGeneration"] == 3
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert status["selector"] == "chutes.ai/chute=m"
    assert status["url"] == "http://m.ns.svc.cluster.local"
    assert "h100_sxm" in status["eligibleGpus"]


def test_loading_model_is_progressing_not_degraded() -> None:
    status = _status(_deployment(ready=0), [_running("a", False, started=False), _running("b", False, False)])
    assert _condition(status, "Ready") == ("False", "ModelLoading")
    assert _condition(status, "Degraded")[0] == "False"
    assert _condition(status, "Progressing") == ("True", "ModelLoading")


def test_failure_in_a_later_pod_is_found() -> None:
    crash = _pod(
        "b",
        phase="Running",
        containerStatuses=[
            {
                "name": "model",
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}},
            }
        ],
    )
    status = _status(_deployment(ready=1), [_running("a", True), crash])
    assert _condition(status, "Ready") == ("False", "CrashLoopBackOff")
    assert _condition(status, "Available") == ("True", "MinimumReplicasAvailable")
    message = next(c for c in status["conditions"] if c["type"] == "Degraded")["message"]
    assert "1 of 2 pods: b:" in message
    assert "exit code 3" in message


def test_most_severe_pod_problem_wins() -> None:
    pull = _pod("c", containerStatuses=[{"name": "model", "state": {"waiting": {"reason": "ErrImagePull"}}}])
    pending = _pod("d", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}])
    status = _status(_deployment(ready=0), [pending, pull])
    assert _condition(status, "Ready") == ("False", "ImagePullBackOff")


def test_unschedulable_carries_the_scheduler_message_and_eligible_gpus() -> None:
    pending = _pod(
        "a",
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/9 nodes are available: 9 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    status = _status(_deployment(replicas=1, ready=0, updated=1), [pending])
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert "needs 8 GPU(s) of:" in ready["message"]


def test_oom_and_probe_failures_are_named() -> None:
    oom = _pod(
        "a",
        containerStatuses=[
            {
                "name": "model",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ],
    )
    problem = pod_problem(oom, NOW)
    assert problem is not None
    assert problem.reason == "OOMKilled"
    problem = pod_problem(_running("b", False, started=True), NOW)
    assert problem is not None
    assert problem.reason == "ProbeFailing"
    assert pod_problem(_running("c", True), NOW) is None
    no_ready_condition = _pod("d", phase="Running", containerStatuses=[{"name": "model", "started": False}])
    loading = pod_problem(no_ready_condition, NOW)
    assert loading is not None
    assert loading.reason == "ModelLoading"


def test_rollout_in_progress_is_not_ready_yet() -> None:
    status = _status(_deployment(updated=1, generation=2), [_running("a", True), _running("b", True)])
    assert _condition(status, "Ready") == ("False", "RollingOut")
    assert _condition(status, "Available")[0] == "True"


def test_invalid_spec_is_reported_and_degraded() -> None:
    status = _status(None, [], workload=None, invalid_spec="spec.nodeSelector admits no GPU")
    assert _condition(status, "Ready") == ("False", "InvalidSpec")
    assert _condition(status, "Degraded") == ("True", "InvalidSpec")


def test_unchanged_status_needs_no_write() -> None:
    first = _status(_deployment(), [_running("a", True), _running("b", True)])
    second = compute_status(
        Observation(
            generation=3,
            selector="chutes.ai/chute=m",
            workload=WORKLOAD,
            deployment=_deployment(),
            pods=[_running("a", True), _running("b", True)],
            previous=first,
        ),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert not status_changed(first, second)


def test_monitored_condition_follows_the_servicemonitor_api() -> None:
    missing = _status(_deployment(), [_running("a", True), _running("b", True)], monitoring_unavailable=True)
    assert _condition(missing, "Monitored") == ("False", "MonitoringUnavailable")
    assert _condition(missing, "Ready") == ("True", "Serving")
    present = _status(_deployment(), [_running("a", True), _running("b", True)])
    assert _condition(present, "Monitored") == ("True", "ServiceMonitorApplied")


def test_reasons_are_the_documented_constants() -> None:
    import ast
    from pathlib import Path

    from chute_operator import status as status_module
    from chute_operator.api.reasons import CATALOG

    tree = ast.parse(Path(status_module.__file__).read_text())
    reason_args = {"Observed": (0, 2), "PodProblem": (1,), "Failure": (0,)}
    literal_reasons = [
        ast.unparse(call)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        for index in reason_args.get(getattr(call.func, "id", ""), ())
        if isinstance(call.args[index], ast.Constant)
    ]
    assert literal_reasons == []
    crash = _pod(
        "b", containerStatuses=[{"name": "model", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
    )
    for pods in ([_running("a", True)], [_running("a", False, started=False)], [crash], []):
        for deployment in (_deployment(), _deployment(ready=0), None):
            for condition in _status(deployment, pods)["conditions"]:
                assert condition["reason"] in CATALOG, condition


def _recovered_from_oom(name: str, ready: bool, killed_seconds_ago: int) -> dict[str, Any]:
    finished = (NOW - timedelta(seconds=killed_seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod = _running(name, ready)
    pod["status"]["containerStatuses"][0].update(
        restartCount=1,
        lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": finished}},
    )
    return pod


def test_a_past_oom_is_forgotten_once_the_container_serves_again() -> None:
    pods = [
        _running("a", True),
        _recovered_from_oom("b", ready=True, killed_seconds_ago=OOM_RECENT_SECONDS + 1),
    ]
    status = _status(_deployment(), pods)
    assert _condition(status, "Degraded") == ("False", "AsExpected")
    assert _condition(status, "Ready") == ("True", "Serving")


def test_a_recent_oom_is_reported_even_when_the_container_serves_again() -> None:
    pods = [_running("a", True), _recovered_from_oom("b", ready=True, killed_seconds_ago=60)]
    assert _condition(_status(_deployment(), pods), "Degraded") == ("True", "OOMKilled")


def test_a_recent_oom_of_a_container_that_serves_again_leaves_the_chute_ready() -> None:
    # Reported while recent (Degraded), but a model that was killed, restarted and serves is no failure.
    pods = [_running("a", True), _recovered_from_oom("b", ready=True, killed_seconds_ago=60)]
    status = _status(_deployment(), pods)
    assert _condition(status, "Ready") == ("True", "Serving")
    assert _condition(status, "Degraded") == ("True", "OOMKilled")


def test_an_oom_killed_container_not_serving_yet_makes_the_chute_not_ready() -> None:
    pods = [_running("a", True), _recovered_from_oom("b", ready=False, killed_seconds_ago=60)]
    assert _condition(_status(_deployment(ready=1), pods), "Ready") == ("False", "OOMKilled")


def test_an_old_oom_is_reported_while_the_container_is_not_ready() -> None:
    pods = [_running("a", True), _recovered_from_oom("b", ready=False, killed_seconds_ago=86400)]
    status = _status(_deployment(ready=1), pods)
    assert _condition(status, "Degraded") == ("True", "OOMKilled")


def test_a_serving_chute_stays_ready_while_the_autoscaler_adds_replicas() -> None:
    # The HPA raised replicas from 2 to 3: the new pod (current template) loads its model.
    pods = [_running("a", True), _running("b", True), _running("c", False, started=False)]
    status = _status(_deployment(replicas=3, ready=2, updated=3), pods)
    assert _condition(status, "Ready") == ("True", "Serving")
    assert _condition(status, "Progressing") == ("True", "ModelLoading")
    assert _condition(status, "Degraded") == ("False", "AsExpected")


def test_a_serving_chute_stays_ready_while_a_pod_is_replaced() -> None:
    # Two fixed replicas, one pod deleted (evicted, node drained): its replacement is scheduled.
    pods = [_running("a", True), _pod("c", phase="Pending")]
    status = _status(_deployment(replicas=2, ready=1, updated=2), pods)
    assert _condition(status, "Ready") == ("True", "Serving")
    assert _condition(status, "Progressing") == ("True", "ScalingUp")


def test_a_scale_up_pod_without_a_node_leaves_the_chute_ready_but_degraded() -> None:
    pending = _pod("c", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}])
    status = _status(
        _deployment(replicas=3, ready=2, updated=3), [_running("a", True), _running("b", True), pending]
    )
    assert _condition(status, "Ready") == ("True", "Serving")
    assert _condition(status, "Degraded") == ("True", "Unschedulable")


def test_a_new_generation_is_not_ready_until_no_old_pod_remains() -> None:
    # maxSurge 1: the new template's pod is up, one old pod still serves.
    deployment = _deployment(replicas=2, ready=2, updated=2, generation=2)
    deployment["status"].update(replicas=3, readyReplicas=3, availableReplicas=3)
    status = _status(deployment, [_running("a", True), _running("b", True), _running("c", True)])
    assert _condition(status, "Ready") == ("False", "RollingOut")
    deployment["status"].update(replicas=2, readyReplicas=2, availableReplicas=2)
    status = _status(deployment, [_running("b", True), _running("c", True)])
    assert _condition(status, "Ready") == ("True", "Serving")


def test_a_deployment_change_not_yet_observed_is_not_ready() -> None:
    deployment = _deployment()
    deployment["metadata"]["generation"] = 5
    status = _status(deployment, [_running("a", True), _running("b", True)])
    assert _condition(status, "Ready") == ("False", "RollingOut")


def test_a_scale_not_yet_observed_keeps_a_serving_chute_ready() -> None:
    # `kubectl scale chute` (or the HPA) bumped the Deployment's generation; its controller has not
    # looked yet, but the pod template is the one it last rolled out: a scale, not a rollout.
    deployment = _deployment()
    deployment["metadata"]["generation"] = 5
    status = _status(deployment, [_running("a", True), _running("b", True)], template_settled=True)
    assert _condition(status, "Ready") == ("True", "Serving")


AUTOSCALED = resolve(
    Chute.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"image": "i", "minInstances": 1, "maxInstances": 4},
        }
    ),
    RenderOptions(catalog=builtin_catalog()),
)


def test_autoscaled_chute_reports_the_hpa_view_and_stays_ready_when_the_metric_is_missing() -> None:
    pods = [_running("a", True), _running("b", True)]
    status = _status(_deployment(), pods, workload=AUTOSCALED, hpa=hpa_failing())
    assert _condition(status, "Autoscaling") == ("False", "MetricUnavailable")
    assert _condition(status, "Ready") == ("True", "Serving")
    assert status["autoscaler"] == {"currentReplicas": 2, "desiredReplicas": 2}


def test_an_operator_restart_does_not_flip_autoscaling_while_the_hpa_fails_for_a_moment() -> None:
    """The HPA failed its metric read 10 s ago (the restarting operator's metrics API was away): the
    Chute that said ScalingActive keeps its whole status, so the restart writes nothing."""
    working = {
        "type": "Autoscaling",
        "status": "True",
        "reason": "ScalingActive",
        "message": "2 replicas, desired 2",
        "observedGeneration": 3,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    hpa = hpa_failing(
        "the server is currently unable to handle the request", since=stamp(NOW - timedelta(seconds=10))
    )
    pods = [_running("a", True), _running("b", True)]
    status = _status(_deployment(), pods, workload=AUTOSCALED, hpa=hpa, previous={"conditions": [working]})
    kept = next(c for c in status["conditions"] if c["type"] == "Autoscaling")
    assert kept == working


def test_fixed_scaling_has_no_autoscaling_condition() -> None:
    status = _status(_deployment(), [_running("a", True), _running("b", True)], hpa={"status": {}})
    assert all(c["type"] != "Autoscaling" for c in status["conditions"])
    assert "autoscaler" not in status


def test_an_object_in_the_way_is_a_child_conflict_even_while_replicas_serve() -> None:
    status = _status(
        _deployment(),
        [_running("m-1", True), _running("m-2", True)],
        child_conflict="Service m exists and is not owned by this Chute",
        apply_error="applying HorizontalPodAutoscaler m: refused",
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ChildConflict")
    assert "Service m" in ready["message"]
    assert "HorizontalPodAutoscaler m" in ready["message"]


def _ready_at(name: str, started: str, ready: str) -> dict[str, Any]:
    return _pod(
        name,
        phase="Running",
        conditions=[{"type": "Ready", "status": "True", "lastTransitionTime": ready}],
        containerStatuses=[
            {"name": "model", "ready": True, "started": True, "state": {"running": {"startedAt": started}}}
        ],
    )


def test_load_seconds_is_the_model_start_to_ready_of_the_pod_ready_last_and_stays_at_zero() -> None:
    pods = [
        _ready_at("old", "2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z"),
        _ready_at("new", "2026-01-01T00:05:00Z", "2026-01-01T00:05:08Z"),
    ]
    assert _status(_deployment(), pods)["loadSeconds"] == 8
    loading = [_running("a", False, started=False)]
    assert _status(_deployment(ready=0), loading, previous={"loadSeconds": 8})["loadSeconds"] == 8
    assert _status(_deployment(0, 0, 0), [], previous={"loadSeconds": 8})["loadSeconds"] == 8
    assert "loadSeconds" not in _status(_deployment(), [_running("a", True)])
