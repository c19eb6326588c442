"""The autoscaler's view for the Chute's status, read from its HPA's status. Pure.

The HPA says whether it can read the metric (``ScalingActive``), whether it can scale
(``AbleToScale``) and why it stops where it does (``ScalingLimited``); the Chute's ``Autoscaling``
condition condenses them, and ``status.autoscaler`` carries the replica counts.

A failed metric read is reported only once it has lasted :data:`METRIC_GRACE_SECONDS`: an operator
restart (its metrics API away for a few seconds, then its caches and its first scrape round) or one
slow round fails an HPA sync or two, and reporting each would write every autoscaled Chute's status
twice and two Events, for nothing a user can act on. The grace counts from no earlier than the
moment this operator's caches synced: a restart that takes longer than the grace (5000 Chutes) is
not reported either, while a failure that lasts is, the grace after the operator is back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from chute_operator.api import reasons as r
from chute_operator.conditions import Observed, find, parse_time

IDLE_AT_ZERO = "idle for shutdownAfterSeconds: scaled to zero; the next request wakes it"
HPA_SCALING_DISABLED = "ScalingDisabled"
"""The HPA's own reason when its target has 0 replicas."""
METRIC_GRACE_SECONDS = 60.0
"""How long the HPA may fail to read the metric before the Chute says MetricUnavailable (four of its
15 s syncs): an operator restart or a slow scrape round is not reported."""

RESTART_WINDOW_SECONDS = 300.0
"""How long before this operator's cache sync a failed metric read may have begun and still be given
the grace from the sync (its metrics API away while the old operator stopped and this one started)."""


def _conditions(hpa: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((hpa or {}).get("status") or {}).get("conditions") or [])


def _quote(condition: dict[str, Any]) -> str:
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


def metric_grace_left(
    hpa: dict[str, Any] | None,
    previous: Sequence[dict[str, Any]],
    now: datetime,
    not_before: datetime | None = None,
) -> float | None:
    """Seconds until a failed metric read is reported, or None when it is reported now (or nothing
    failed): only a Chute that said ScalingActive keeps saying so, and only while the HPA's
    ScalingActive=False is younger than the grace (by its lastTransitionTime). A time ahead of ours
    (the controller-manager's clock) gets at most twice the grace in all; further ahead, none: each
    reconcile computes the grace again from that same time, so capping the wait alone let a clock an
    hour ahead hide a failure for that hour. ``not_before``: the grace counts from no earlier than
    this (when this operator's caches synced: its metrics API was away before, and a failure it
    caused is given the whole grace from then)."""
    active = find(_conditions(hpa), "ScalingActive")
    if active is None or active.get("status") == "True" or active.get("reason") == HPA_SCALING_DISABLED:
        return None
    before = find(list(previous), r.AUTOSCALING) or {}
    since = parse_time(active.get("lastTransitionTime"))
    if before.get("status") != "True" or before.get("reason") != r.SCALING_ACTIVE or since is None:
        return None
    elapsed = (now - since).total_seconds()
    if elapsed < -METRIC_GRACE_SECONDS:
        return None
    if not_before is not None:
        since_sync = (now - not_before).total_seconds()
        # Not for a sync time ahead of ours (the wall clock stepped back since: the grace would be
        # given again at every reconcile), nor for a failure that began long before this operator
        # started (not its metrics API's absence: a crash loop would hide it at every start).
        if since_sync >= 0 and (not_before - since).total_seconds() <= RESTART_WINDOW_SECONDS:
            elapsed = min(elapsed, since_sync)
    left = METRIC_GRACE_SECONDS - elapsed
    return min(left, METRIC_GRACE_SECONDS) if left > 0 else None


def autoscaling_condition(
    hpa: dict[str, Any] | None,
    replicas_available: int,
    *,
    asleep: bool = False,
    previous: Sequence[dict[str, Any]] = (),
    now: datetime | None = None,
    not_before: datetime | None = None,
) -> Observed:
    """Autoscaling, for a Chute that has an HPA (minInstances < maxInstances).

    While no replica is available yet the HPA cannot measure anything: that is pending, not a failure.
    At zero because it was idle, the HPA stands still on purpose (its ScalingDisabled is expected).
    A metric failure within :func:`metric_grace_left` (counted from no earlier than ``not_before``)
    keeps the ``previous`` ScalingActive condition.
    """
    if asleep:
        return Observed(r.AUTOSCALING, "True", r.SCALED_TO_ZERO, IDLE_AT_ZERO)
    conditions = _conditions(hpa)
    active, able = find(conditions, "ScalingActive"), find(conditions, "AbleToScale")
    if hpa is None or active is None:
        return Observed(r.AUTOSCALING, "Unknown", r.AUTOSCALER_PENDING, "the HPA has not reported yet")
    if able is not None and able.get("status") == "False":
        return Observed(r.AUTOSCALING, "False", r.SCALING_BLOCKED, _quote(able))
    if active.get("status") != "True":
        if active.get("reason") == HPA_SCALING_DISABLED:
            return Observed(r.AUTOSCALING, "False", r.SCALING_DISABLED, _quote(active))
        if replicas_available < 1:
            return Observed(
                r.AUTOSCALING, "Unknown", r.AUTOSCALER_PENDING, "waiting for a ready replica to measure"
            )
        before = find(list(previous), r.AUTOSCALING)
        waiting = now is not None and metric_grace_left(hpa, previous, now, not_before) is not None
        if before is not None and waiting:
            return Observed(r.AUTOSCALING, "True", r.SCALING_ACTIVE, before.get("message") or "")
        return Observed(r.AUTOSCALING, "False", r.METRIC_UNAVAILABLE, _quote(active))
    status = (hpa or {}).get("status") or {}
    current, desired = status.get("currentReplicas", 0), status.get("desiredReplicas", 0)
    limited = find(conditions, "ScalingLimited") or {}
    why = _quote(limited) if limited.get("status") == "True" else (able or {}).get("message", "")
    message = f"{current} replicas, desired {desired}" + (f" ({why})" if why else "")
    return Observed(r.AUTOSCALING, "True", r.SCALING_ACTIVE, message)


def autoscaler_status(hpa: dict[str, Any] | None) -> dict[str, Any] | None:
    """``status.autoscaler``: the HPA's current and desired replicas and its last scale time."""
    status = (hpa or {}).get("status")
    if not status:
        return None
    view: dict[str, Any] = {
        "currentReplicas": status.get("currentReplicas", 0),
        "desiredReplicas": status.get("desiredReplicas", 0),
    }
    if status.get("lastScaleTime"):
        view["lastScaleTime"] = status["lastScaleTime"]
    return view
