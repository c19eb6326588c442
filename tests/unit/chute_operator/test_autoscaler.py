"""The Chute's Autoscaling condition and status.autoscaler, read from its HPA's status."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.api import reasons as r
from chute_operator.autoscaler import autoscaler_status, autoscaling_condition


def hpa(*conditions: tuple[str, str, str, str], current: int = 2, desired: int = 3) -> dict[str, Any]:
    return {
        "status": {
            "currentReplicas": current,
            "desiredReplicas": desired,
            "lastScaleTime": "2026-12-02T01:00:00Z",
            "conditions": [
                {"type": t, "status": s, "reason": reason, "message": message}
                for t, s, reason, message in conditions
            ],
        }
    }


ABLE = (
    "AbleToScale",
    "True",
    "SucceededRescale",
    "the HPA controller was able to update the target scale to 3",
)
ACTIVE = (
    "ScalingActive",
    "True",
    "ValidMetricFound",
    "the HPA was able to successfully calculate a replica count from pods metric chute_utilization_ratio",
)
NOT_LIMITED = (
    "ScalingLimited",
    "False",
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
)
UNREADABLE = (
    "ScalingActive",
    "False",
    "FailedGetPodsMetric",
    "the HPA was unable to compute the replica count: unable to get metric chute_utilization_ratio: "
    "the server could not find the requested resource",
)


def test_no_hpa_status_yet_is_pending() -> None:
    assert autoscaling_condition(None, 1).reason == r.AUTOSCALER_PENDING
    assert autoscaling_condition({"status": {}}, 1).status == "Unknown"
    assert autoscaler_status(None) is None


def test_working_autoscaler_says_current_desired_and_why() -> None:
    condition = autoscaling_condition(hpa(ABLE, ACTIVE, NOT_LIMITED), 2)
    assert (condition.type, condition.status, condition.reason) == ("Autoscaling", "True", r.SCALING_ACTIVE)
    assert condition.message == (
        "2 replicas, desired 3 (the HPA controller was able to update the target scale to 3)"
    )
    assert autoscaler_status(hpa(ABLE, ACTIVE)) == {
        "currentReplicas": 2,
        "desiredReplicas": 3,
        "lastScaleTime": "2026-12-02T01:00:00Z",
    }


def test_limited_by_max_instances_says_so() -> None:
    limited = (
        "ScalingLimited",
        "True",
        "TooManyReplicas",
        "the desired replica count is more than the maximum",
    )
    condition = autoscaling_condition(hpa(ABLE, ACTIVE, limited, current=4, desired=4), 4)
    assert condition.message == (
        "4 replicas, desired 4 (TooManyReplicas: the desired replica count is more than the maximum)"
    )


def test_unreadable_metric_quotes_the_hpa() -> None:
    condition = autoscaling_condition(hpa(ABLE, UNREADABLE), 1)
    assert (condition.status, condition.reason) == ("False", r.METRIC_UNAVAILABLE)
    assert condition.message.startswith(
        "FailedGetPodsMetric: the HPA was unable to compute the replica count"
    )


def test_unreadable_metric_before_any_replica_is_ready_is_only_pending() -> None:
    condition = autoscaling_condition(hpa(ABLE, UNREADABLE), 0)
    assert (condition.status, condition.reason) == ("Unknown", r.AUTOSCALER_PENDING)


@pytest.mark.parametrize(
    ("conditions", "reason"),
    [
        (
            (("AbleToScale", "False", "FailedGetScale", 'deployments.apps "x" not found'), ACTIVE),
            r.SCALING_BLOCKED,
        ),
        (
            (
                ABLE,
                (
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
            ),
            r.SCALING_DISABLED,
        ),
    ],
)
def test_blocked_and_disabled(conditions: tuple[tuple[str, str, str, str], ...], reason: str) -> None:
    condition = autoscaling_condition(hpa(*conditions), 1)
    assert (condition.status, condition.reason) == ("False", reason)
