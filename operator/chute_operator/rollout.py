"""GPU-safe rollouts: whether a surging rollout is stuck for lack of GPUs, and which budget to render.

Pure: reads the live Deployment and its pods (plain dicts), imports no client. The reconciler
observes, ``workload.resolve`` renders the budget, ``status`` reports ``NoSpareGpu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chute_operator.api.spec import RolloutStrategy
from chute_operator.gpus import GPU_RESOURCE, GPU_RESOURCES

INSUFFICIENT_GPU = f"Insufficient {GPU_RESOURCE}"
"""What the scheduler says of a node without enough free NVIDIA GPUs."""
INSUFFICIENT_GPUS = tuple(f"Insufficient {resource}" for resource in GPU_RESOURCES.values())
"""The same of every vendor's GPUs."""
SURGE = (1, 0)
"""(maxSurge, maxUnavailable): a new replica starts before an old one stops."""
REPLACE = (0, 1)
"""(maxSurge, maxUnavailable): an old replica stops before its successor starts."""
REPLACE_WAIT_SECONDS = 120
"""While pods are replaced, how long a new pod may wait for the GPU its predecessor frees before it
counts as Unschedulable."""


@dataclass(frozen=True)
class RolloutObservation:
    """What the live Deployment and pods say about the rollout under way, if any."""

    replicas: int
    """The Deployment's desired replicas (live: the HPA may have changed them)."""
    in_progress: bool
    """The Deployment has not finished rolling out its current pod template."""
    surge_blocked: bool
    """A pod beyond the desired count cannot be scheduled for lack of GPUs."""
    replacing: bool
    """The live Deployment replaces pods (maxSurge 0) and its rollout is not finished."""
    gpu_starved: list[str]
    """Names of the pods no node has enough free GPUs for."""


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def lacks_gpus(pod: dict[str, Any]) -> bool:
    """The scheduler found no node with enough free GPUs for this pod."""
    for condition in _get(pod, "status", "conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            message = condition.get("message") or ""
            return condition.get("reason") == "Unschedulable" and any(i in message for i in INSUFFICIENT_GPUS)
    return False


def waiting_since(pod: dict[str, Any]) -> datetime | None:
    """When the scheduler first refused this pod (its PodScheduled condition turned False)."""
    for condition in _get(pod, "status", "conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("lastTransitionTime"):
            return datetime.fromisoformat(condition["lastTransitionTime"].replace("Z", "+00:00"))
    return None


def rollout_in_progress(deployment: dict[str, Any]) -> bool:
    """The Deployment controller has not finished (or not yet observed) its current spec."""
    status = deployment.get("status") or {}
    desired = _get(deployment, "spec", "replicas")
    desired = 1 if desired is None else desired
    generation = _get(deployment, "metadata", "generation") or 0
    return (
        (status.get("observedGeneration") or 0) < generation
        or (status.get("updatedReplicas") or 0) < desired
        or (status.get("replicas") or 0) > desired
        or (status.get("availableReplicas") or 0) < desired
    )


def _budget_of(deployment: dict[str, Any]) -> tuple[int, int]:
    rolling = _get(deployment, "spec", "strategy", "rollingUpdate") or {}
    return rolling.get("maxSurge", 1), rolling.get("maxUnavailable", 0)


def observe(deployment: dict[str, Any] | None, pods: list[dict[str, Any]]) -> RolloutObservation:
    """What the live objects say; a missing Deployment is a rollout not begun."""
    if not deployment:
        return RolloutObservation(0, False, False, False, [])
    desired = _get(deployment, "spec", "replicas")
    desired = 1 if desired is None else int(desired)
    live = [p for p in pods if not _get(p, "metadata", "deletionTimestamp")]
    starved = [p for p in live if lacks_gpus(p)]
    in_progress = rollout_in_progress(deployment)
    surge_blocked = in_progress and bool(starved) and len(live) > desired and len(starved) < len(live)
    replacing = in_progress and _budget_of(deployment) == REPLACE
    names = sorted(str(_get(p, "metadata", "name")) for p in starved)
    return RolloutObservation(desired, in_progress, surge_blocked, replacing, names)


def budget(strategy: RolloutStrategy, observed: RolloutObservation | None) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) to render for this strategy and what the cluster shows."""
    if strategy == "Surge":
        return SURGE
    if strategy == "Replace":
        return REPLACE
    if observed and observed.replicas > 1 and (observed.surge_blocked or observed.replacing):
        return REPLACE
    return SURGE
