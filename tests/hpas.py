"""HPAs whose metric read fails, and the Autoscaling condition of a Chute that was scaling: what the
metric grace's tests share (autoscaler.metric_grace_left)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

WORKING_AUTOSCALING = {
    "type": "Autoscaling",
    "status": "True",
    "reason": "ScalingActive",
    "message": "2 replicas, desired 3",
    "lastTransitionTime": "2026-12-07T09:00:00Z",
}
"""A Chute's Autoscaling condition while its HPA read the metric."""


def stamp(when: datetime) -> str:
    """``when`` as a metav1.Time."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def hpa_failing(
    message: str = "unable to get metric chute_utilization_ratio",
    since: str | None = None,
    current: int = 2,
    desired: int = 2,
) -> dict[str, Any]:
    """An HPA able to scale whose ScalingActive is False (FailedGetPodsMetric), ``since`` that time."""
    failing: dict[str, Any] = {
        "type": "ScalingActive",
        "status": "False",
        "reason": "FailedGetPodsMetric",
        "message": message,
    }
    if since is not None:
        failing["lastTransitionTime"] = since
    able = {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "ok"}
    return {"status": {"currentReplicas": current, "desiredReplicas": desired, "conditions": [able, failing]}}
