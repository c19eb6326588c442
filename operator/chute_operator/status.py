"""The Chute's status, computed purely from what the cluster shows: Deployment and all its pods."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chute_operator.conditions import Observed, find, merge_conditions
from chute_operator.workload import MODEL_CONTAINER, Workload

PULL_FAILURES = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
SEVERITY = {
    "ImagePullBackOff": 5,
    "OOMKilled": 4,
    "CrashLoopBackOff": 4,
    "Unschedulable": 3,
    "ProbeFailing": 2,
}
"""Pod problems that make a Chute Degraded, most severe first when several pods differ."""
LOADING = "ModelLoading"


@dataclass(frozen=True)
class PodProblem:
    """Why one pod does not serve."""

    pod: str
    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    """Everything status is computed from."""

    generation: int | None
    selector: str
    workload: Workload | None
    """None when the spec is invalid."""
    invalid_spec: str | None = None
    apply_error: str | None = None
    deployment: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)
    monitoring_unavailable: bool = False
    """The spec asks for a ServiceMonitor but the cluster has no ServiceMonitor API."""


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """The most telling reason this pod is not serving, or None if it is (or is on its way)."""
    name = _get(pod, "metadata", "name") or "?"
    status = pod.get("status") or {}
    scheduled = find(status.get("conditions") or [], "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return PodProblem(name, "Unschedulable", scheduled.get("message") or "no node fits the pod")
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for container in statuses:
        waiting = _get(container, "state", "waiting") or {}
        last = _get(container, "lastState", "terminated") or {}
        current = _get(container, "state", "terminated") or {}
        cname, restarts = container.get("name"), container.get("restartCount", 0)
        if waiting.get("reason") in PULL_FAILURES:
            detail = waiting.get("message") or waiting["reason"]
            return PodProblem(name, "ImagePullBackOff", f"container {cname}: {detail}")
        if "OOMKilled" in (last.get("reason"), current.get("reason")):
            return PodProblem(
                name, "OOMKilled", f"container {cname} ran out of memory and was killed ({restarts} restarts)"
            )
        if waiting.get("reason") == "CrashLoopBackOff":
            code = last.get("exitCode", "?")
            return PodProblem(
                name,
                "CrashLoopBackOff",
                f"container {cname} keeps exiting (exit code {code}, {restarts} restarts)",
            )
    if status.get("phase") == "Running":
        ready = find(status.get("conditions") or [], "Ready") or {}
        if ready.get("status") != "True":
            containers: list[dict[str, Any]] = status.get("containerStatuses") or []
            model = next((c for c in containers if c.get("name") == MODEL_CONTAINER), {})
            if not model.get("started"):
                return PodProblem(name, LOADING, "the model server is loading")
            return PodProblem(name, "ProbeFailing", "running, but the model does not answer its health check")
    return None


def _summarise(problems: list[PodProblem], total: int) -> tuple[str, str] | None:
    failures = [p for p in problems if p.reason in SEVERITY]
    if not failures:
        return None
    worst = max(failures, key=lambda p: SEVERITY[p.reason])
    count = Counter(p.reason for p in failures)[worst.reason]
    return worst.reason, f"{count} of {total} pods: {worst.pod}: {worst.message}"


def _conditions(obs: Observation) -> list[Observed]:
    deployment = obs.deployment or {}
    dstatus = deployment.get("status") or {}
    desired = _get(deployment, "spec", "replicas")
    if desired is None:
        desired = obs.workload.replicas if obs.workload and obs.workload.replicas is not None else 1
    available = dstatus.get("availableReplicas") or 0
    ready = dstatus.get("readyReplicas") or 0
    updated = dstatus.get("updatedReplicas") or 0
    current_generation = (dstatus.get("observedGeneration") or 0) >= (
        _get(deployment, "metadata", "generation") or 0
    )
    pods = [p for p in obs.pods if not _get(p, "metadata", "deletionTimestamp")]
    problems = [p for p in (pod_problem(pod) for pod in pods) if p]
    failure = _summarise(problems, len(pods))
    loading = [p for p in problems if p.reason == LOADING]
    progressing_condition = find(dstatus.get("conditions") or [], "Progressing") or {}
    stalled = progressing_condition.get("reason") == "ProgressDeadlineExceeded"
    rolled_out = (
        bool(deployment) and current_generation and updated == desired == (dstatus.get("replicas") or 0)
    )
    rolled_out = rolled_out and available == desired

    if obs.workload and failure and failure[0] == "Unschedulable":
        eligible = ", ".join(obs.workload.eligible_gpus) or "none (CPU-only)"
        failure = (failure[0], f"{failure[1]} (needs {obs.workload.gpu_count} GPU(s) of: {eligible})")

    if desired == 0:
        avail = Observed("Available", "False", "ScaledToZero", "no replicas are requested")
    elif available >= 1:
        avail = Observed(
            "Available", "True", "MinimumReplicasAvailable", f"{available}/{desired} replicas available"
        )
    elif failure:
        avail = Observed("Available", "False", failure[0], failure[1])
    elif loading:
        avail = Observed("Available", "False", LOADING, f"{len(loading)} pod(s) loading the model")
    else:
        avail = Observed("Available", "False", "NoReplicasReady", "no replica is ready yet")

    if obs.invalid_spec:
        progress = Observed("Progressing", "False", "InvalidSpec", obs.invalid_spec)
    elif not deployment:
        progress = Observed("Progressing", "True", "Creating", "creating the Deployment")
    elif stalled:
        progress = Observed(
            "Progressing", "False", "ProgressDeadlineExceeded", progressing_condition.get("message", "")
        )
    elif rolled_out:
        progress = Observed("Progressing", "False", "RolloutComplete", f"{desired} replicas up to date")
    else:
        counts = f"{updated}/{desired} replicas updated, {ready} ready"
        if loading:
            limit = f" (allowed {obs.workload.startup_timeout_seconds}s)" if obs.workload else ""
            progress = Observed(
                "Progressing", "True", LOADING, f"{len(loading)} pod(s) loading the model{limit}; {counts}"
            )
        else:
            progress = Observed("Progressing", "True", "RollingOut", counts)

    if obs.invalid_spec:
        degraded = Observed("Degraded", "True", "InvalidSpec", obs.invalid_spec)
    elif obs.apply_error:
        degraded = Observed("Degraded", "True", "ApplyFailed", obs.apply_error)
    elif failure:
        degraded = Observed("Degraded", "True", failure[0], failure[1])
    elif stalled:
        degraded = Observed("Degraded", "True", "ProgressDeadlineExceeded", progress.message)
    else:
        degraded = Observed("Degraded", "False", "AsExpected", "")

    if degraded.status == "True":
        summary = Observed("Ready", "False", degraded.reason, degraded.message)
    elif avail.status == "True" and rolled_out:
        summary = Observed("Ready", "True", "Serving", f"{ready}/{desired} replicas ready")
    elif avail.reason == "ScaledToZero":
        summary = Observed("Ready", "False", "ScaledToZero", avail.message)
    elif progress.status == "True":
        summary = Observed("Ready", "False", progress.reason, progress.message)
    else:
        summary = Observed("Ready", "False", avail.reason, avail.message)
    observed = [summary, avail, progress, degraded]
    if obs.workload and obs.workload.service_monitor:
        if obs.monitoring_unavailable:
            observed.append(
                Observed(
                    "Monitored",
                    "False",
                    "MonitoringUnavailable",
                    "the ServiceMonitor API (prometheus-operator) is not installed; the Chute runs "
                    "without one and gets it once the API appears",
                )
            )
        else:
            observed.append(Observed("Monitored", "True", "ServiceMonitorApplied", ""))
    return observed


def compute_status(obs: Observation, now: datetime) -> dict[str, Any]:
    """The full status object (camelCase) to write to the Chute's /status."""
    deployment_status = (obs.deployment or {}).get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": merge_conditions(
            obs.previous.get("conditions") or [], _conditions(obs), obs.generation, now
        ),
        "replicas": deployment_status.get("replicas") or 0,
        "readyReplicas": deployment_status.get("readyReplicas") or 0,
        "selector": obs.selector,
        "eligibleGpus": obs.workload.eligible_gpus if obs.workload else obs.previous.get("eligibleGpus", []),
    }
    url = obs.workload.url if obs.workload else obs.previous.get("url")
    if url:
        status["url"] = url
    return status


def status_changed(previous: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing ``new`` would change anything."""
    return {k: v for k, v in previous.items() if v is not None} != new
