"""The grace of a failed metric read counted from this operator's cache sync (autoscaler.metric_grace_left's
``not_before``): what a breaking pass tried against it. A clock stepped back after the sync, and an
operator restarting again and again, must not hide a lasting failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chute_operator.api import reasons as r
from chute_operator.autoscaler import METRIC_GRACE_SECONDS, autoscaling_condition, metric_grace_left
from tests.hpas import WORKING_AUTOSCALING

WORKING = {**WORKING_AUTOSCALING, "message": "2 replicas, desired 3"}


def _at(seconds: float) -> datetime:
    return datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC) + timedelta(seconds=seconds)


def _failed_since(seconds: float) -> dict[str, Any]:
    when = _at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": {
            "currentReplicas": 2,
            "desiredReplicas": 3,
            "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale", "message": "ok"},
                {
                    "type": "ScalingActive",
                    "status": "False",
                    "reason": "FailedGetPodsMetric",
                    "message": "unable to get metric chute_utilization_ratio",
                    "lastTransitionTime": when,
                },
            ],
        }
    }


def _hidden_for(hpa: dict[str, Any], start: float, not_before: datetime, limit: float = 10_000) -> float:
    """Seconds from ``start`` until the failure is reported, following the operator: each reconcile
    that keeps it hidden is queued again after the grace it returned."""
    t = start
    while t - start < limit:
        left = metric_grace_left(hpa, [WORKING], _at(t), not_before)
        if left is None:
            return t - start
        t += left
    return limit


def test_a_wall_clock_stepped_back_after_the_sync_hides_no_failure_for_long() -> None:
    """``metric_grace_from`` is a wall-clock time taken at the cache sync. If the operator's clock is
    stepped back afterwards (NTP/chrony correcting a node that booted an hour fast), ``now - not_before``
    is negative for an hour: every reconcile gets a fresh full grace (capped at 60 s, then queued
    again), as the "clock an hour ahead hid a failure for that hour" that metric_grace_left's own guard
    stops for the HPA's time. Here an HPA failing for an hour was hidden for another hour."""
    hpa = _failed_since(-3600)  # failing for an hour
    synced = _at(3600)  # the sync read a clock an hour fast; corrected right after
    hidden = _hidden_for(hpa, 0, synced)
    assert hidden <= 2 * METRIC_GRACE_SECONDS, f"hidden for {hidden:.0f} s"


def test_an_operator_that_restarts_within_the_grace_still_reports_a_lasting_failure() -> None:
    """Every process start resets the grace (Controller.sync). An operator that dies less than 60 s
    after its cache sync (a crash loop, OOM at the first scrape round, a liveness probe too tight at
    5000 Chutes) kept an HPA failure that had lasted for hours hidden at every start: only a failure
    that began shortly before the sync (autoscaler.RESTART_WINDOW_SECONDS) is given the grace from it."""
    hpa = _failed_since(-4 * 3600)  # the metric unreadable for four hours
    reported_at = []
    for restart in range(10):  # back after CrashLoopBackOff's 5 min each time, alive 45 s after its sync
        synced = _at(restart * 300.0)
        for alive in (0.0, 15.0, 30.0, 45.0):
            now = _at(restart * 300.0 + alive)
            condition = autoscaling_condition(hpa, 2, previous=[WORKING], now=now, not_before=synced)
            if (condition.status, condition.reason) == ("False", r.METRIC_UNAVAILABLE):
                reported_at.append((restart, alive))
    assert reported_at, "a failure 4 h old before the first restart, never reported over 50 min of restarts"


def test_a_lasting_failure_is_reported_about_60_s_after_the_sync() -> None:
    hpa = _failed_since(-120)  # failed while the operator was away
    assert _hidden_for(hpa, 0, _at(0)) == pytest.approx(METRIC_GRACE_SECONDS)
    assert _hidden_for(hpa, 30, _at(0)) == pytest.approx(METRIC_GRACE_SECONDS - 30)
    # the HPA's clock ahead of ours by less than the grace: at most twice the grace, as before
    assert _hidden_for(_failed_since(50), 0, _at(0)) <= 2 * METRIC_GRACE_SECONDS
    # not said ScalingActive before: no grace at all, sync or not
    reported = {**WORKING, "status": "False", "reason": r.METRIC_UNAVAILABLE}
    assert metric_grace_left(hpa, [reported], _at(1), _at(0)) is None
