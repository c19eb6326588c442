"""The Chute's Autoscaling condition and status.autoscaler, read from its HPA's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chute_operator.api import reasons as r
from chute_operator.autoscaler import (
    METRIC_GRACE_SECONDS,
    autoscaler_status,
    autoscaling_condition,
    metric_grace_left,
)
from tests.hpas import WORKING_AUTOSCALING


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


# A failed metric read shorter than the grace is not reported (an operator restart, a missed round)

FAILED_AT = "2026-12-07T10:00:00Z"
WORKING = WORKING_AUTOSCALING


def _failed_since(when: str = FAILED_AT) -> dict[str, Any]:
    found = hpa(ABLE, UNREADABLE)
    found["status"]["conditions"][1]["lastTransitionTime"] = when
    return found


def _at(seconds: float) -> datetime:
    return datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC) + timedelta(seconds=seconds)


def test_a_metric_failure_younger_than_the_grace_keeps_the_working_condition() -> None:
    condition = autoscaling_condition(_failed_since(), 2, previous=[WORKING], now=_at(20))
    assert (condition.status, condition.reason, condition.message) == (
        "True",
        r.SCALING_ACTIVE,
        "2 replicas, desired 3",
    )
    assert metric_grace_left(_failed_since(), [WORKING], _at(20)) == pytest.approx(METRIC_GRACE_SECONDS - 20)


def test_a_metric_failure_older_than_the_grace_is_reported() -> None:
    late = _at(METRIC_GRACE_SECONDS + 1)
    condition = autoscaling_condition(_failed_since(), 2, previous=[WORKING], now=late)
    assert (condition.status, condition.reason) == ("False", r.METRIC_UNAVAILABLE)
    assert metric_grace_left(_failed_since(), [WORKING], late) is None


def test_the_grace_counts_from_when_this_operator_came_back() -> None:
    """A restarted operator's metrics API was away while it started: an HPA that failed before its
    caches synced (``not_before``) is given the whole grace from then, not reported at once."""
    failed, now = _failed_since(), _at(METRIC_GRACE_SECONDS + 30)
    assert metric_grace_left(failed, [WORKING], now, not_before=_at(50)) == pytest.approx(20)
    condition = autoscaling_condition(failed, 2, previous=[WORKING], now=now, not_before=_at(50))
    assert (condition.status, condition.reason) == ("True", r.SCALING_ACTIVE)
    assert metric_grace_left(failed, [WORKING], now, not_before=_at(20)) is None
    assert metric_grace_left(failed, [WORKING], _at(10), not_before=_at(-100)) == pytest.approx(50)


def test_no_grace_without_a_working_condition_before_or_a_time() -> None:
    reported = {**WORKING, "status": "False", "reason": "MetricUnavailable"}
    for previous, found in (
        ([], _failed_since()),
        ([reported], _failed_since()),
        ([WORKING], hpa(ABLE, UNREADABLE)),
    ):
        assert metric_grace_left(found, previous, _at(5)) is None
        assert autoscaling_condition(found, 2, previous=previous, now=_at(5)).reason == r.METRIC_UNAVAILABLE


def test_the_grace_is_capped_when_the_hpa_clock_runs_ahead() -> None:
    assert metric_grace_left(_failed_since("2026-12-07T10:00:30Z"), [WORKING], _at(0)) == METRIC_GRACE_SECONDS
    # far ahead: no grace at all (each reconcile would compute a full one again: test_break32)
    assert metric_grace_left(_failed_since("2026-12-07T11:00:00Z"), [WORKING], _at(0)) is None


def test_the_grace_does_not_hide_a_blocked_or_disabled_hpa() -> None:
    blocked = hpa(("AbleToScale", "False", "FailedGetScale", "no scale"), UNREADABLE)
    assert autoscaling_condition(blocked, 2, previous=[WORKING], now=_at(1)).reason == r.SCALING_BLOCKED
    disabled = hpa(ABLE, ("ScalingActive", "False", "ScalingDisabled", "scaling is disabled"))
    disabled["status"]["conditions"][1]["lastTransitionTime"] = FAILED_AT
    assert metric_grace_left(disabled, [WORKING], _at(1)) is None
