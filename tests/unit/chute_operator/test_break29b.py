"""Breaking pass 29b: the weights download retry, deadline and stale-claim fixes of 6f2c51e, as an
attacker, a careless user and a failing cluster would use them. Each test is a finding, fixed."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest

from chute_operator.api import reasons as r
from chute_operator.plan import make_plan
from chute_operator.settings import Settings
from chute_operator.weights import RETRY_SECONDS, WeightsView
from chute_shared import weights as shared
from tests.unit.chute_operator.test_plan import MANAGER, NOW, _snapshot
from tests.unit.chute_operator.test_weights_plan import _at, _cached, _failed_at, _view

VARIABLE = "CHUTE_OPERATOR_WEIGHTS_DOWNLOAD_DEADLINE_SECONDS"


def _with_job(view: WeightsView, **changes: Any) -> WeightsView:
    """The view with its Job's metadata (``metadata``) and Failed condition (``condition``) changed."""
    live = []
    for obj in view.live:
        if obj is not None and obj["kind"] == "Job":
            obj = {**obj, "metadata": {**obj["metadata"], **changes.get("metadata", {})}}
            if "condition" in changes:
                (condition,) = obj["status"]["conditions"]
                obj["status"] = {"conditions": [{**condition, **changes["condition"]}]}
        live.append(obj)
    return dataclasses.replace(view, live=tuple(live))


def _download_pod(view: WeightsView, name: str, reason: str, finished: str) -> dict[str, Any]:
    """A failed download pod of the view's Job that wrote ``reason`` as its termination message."""
    job = (view.live_of("Job") or {})["metadata"]
    report = json.dumps({"reason": reason, "message": f"the hub said {reason}"})
    terminated = {"exitCode": 3 if reason != shared.DOWNLOAD_FAILED else 1, "message": report}
    terminated["finishedAt"] = finished
    return {
        "metadata": {
            "name": name,
            "labels": {shared.WEIGHTS_LABEL: view.cache.key},
            "ownerReferences": [{"kind": "Job", "uid": job["uid"]}],
        },
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": shared.DOWNLOAD_CONTAINER, "state": {"terminated": terminated}}],
        },
    }


# 1. A permanent failure is decided from the pods' list order (or their presence), not from the Job.


def test_a_permanent_report_is_not_hidden_by_an_earlier_transient_pods_report() -> None:
    """Breaking pass 29b (fixed): _failure takes the report of the pod listed last, not the pod that
    failed the Job: after a relist (operator restart, leader change) pods come in name order, and a first
    pod's transient DownloadFailed hides the GatedRepo that failed the Job: it is retried"""
    snapshot = _snapshot(_cached(), live={})
    view = _failed_at(_view(snapshot, None), _at(3600), "Job has failed: FailJob rule")
    view = _with_job(view, condition={"reason": "PodFailurePolicy"})
    # the pod that failed the Job (later, permanent) is listed first: names are random suffixes
    last = _download_pod(view, "chute-weights-x-abcde", shared.GATED_REPO, _at(3660))
    first = _download_pod(view, "chute-weights-x-zzzzz", shared.DOWNLOAD_FAILED, _at(3700))
    snapshot = dataclasses.replace(snapshot, weights=dataclasses.replace(view, pods=(last, first)))
    plan = make_plan(snapshot, NOW, MANAGER)
    assert plan.weights is not None
    assert plan.weights.reason == r.GATED_REPO
    assert plan.weights_restart is None


def test_a_job_failed_by_its_pod_failure_policy_is_not_retried_when_its_pod_is_gone() -> None:
    """Breaking pass 29b (fixed): a Job failed by its podFailurePolicy (FailJob: the downloader's
    permanent exit code) whose pod is gone (pod GC of terminated pods, a node deleted) reads as a
    transient DownloadFailed and is retried"""
    snapshot = _snapshot(_cached(), live={})
    message = (
        "Container download for pod ns/chute-weights-x-abcde failed with exit code 3 matching "
        "FailJob rule at index 0"
    )
    view = _with_job(
        _failed_at(_view(snapshot, None), _at(3600), message), condition={"reason": "PodFailurePolicy"}
    )
    plan = make_plan(dataclasses.replace(snapshot, weights=view), NOW, MANAGER)
    assert plan.weights_restart is None


# 2. The deadline setting is not checked.


@pytest.mark.parametrize("text", ["0", "-1", "10000000000"])
def test_a_hostile_download_deadline_is_refused_at_start(text: str) -> None:
    """Breaking pass 29b (fixed): CHUTE_OPERATOR_WEIGHTS_DOWNLOAD_DEADLINE_SECONDS is not checked: 0
    fails every download Job at once (DeadlineExceeded, retried every 5 minutes for ever), a negative
    value makes every Job apply fail (422), and above ~9.2e9 s the Job controller's time.Duration
    overflows negative: the Job fails at once too"""
    with pytest.raises(ValueError, match=VARIABLE):
        Settings.from_env({VARIABLE: text})


# 3. A Job already being deleted is deleted again on every reconcile.


@pytest.mark.parametrize("case", ["failed", "stale"])
def test_a_job_being_deleted_is_not_deleted_again(case: str) -> None:
    """Breaking pass 29b (fixed): a Job already being deleted (kubectl delete --cascade=foreground, a
    finalizer, a pod stuck Terminating on a lost node) is still Failed, or still older than its claim:
    restart() deletes it again every POLL_SECONDS (a GET and a DELETE per Chute of the cache) for as long
    as it lingers"""
    snapshot = _snapshot(_cached(), live={})
    view = _failed_at(_view(snapshot, None), _at(3600))
    if case == "stale":
        view = _with_job(_view(snapshot, "Complete"), metadata={"creationTimestamp": _at(3600)})
        live = []
        for obj in view.live:
            if obj is not None and obj["kind"] == "PersistentVolumeClaim":
                obj = {**obj, "metadata": {**obj["metadata"], "creationTimestamp": _at(60)}}
            live.append(obj)
        view = dataclasses.replace(view, live=tuple(live))
    view = _with_job(view, metadata={"deletionTimestamp": _at(30), "finalizers": ["foregroundDeletion"]})
    plan = make_plan(dataclasses.replace(snapshot, weights=view), NOW, MANAGER)
    assert plan.weights_restart is None


# 4. Clock skew: a Failed condition in the operator's future delays the retry by the skew.


def test_the_retry_wait_is_never_longer_than_the_retry_pause() -> None:
    """Breaking pass 29b (fixed): the wait is RETRY_SECONDS minus the time since lastTransitionTime,
    unbounded when the control plane's clock is ahead of the operator's: a skew of an hour (or a garbled
    year) postpones the retry by as much"""
    snapshot = _snapshot(_cached(), live={})
    view = _failed_at(_view(snapshot, None), (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    plan = make_plan(dataclasses.replace(snapshot, weights=view), NOW, MANAGER)
    assert plan.weights_restart is None
    assert plan.weights_retry_seconds is not None
    assert plan.weights_retry_seconds <= RETRY_SECONDS
