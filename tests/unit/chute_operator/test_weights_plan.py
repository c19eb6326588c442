"""A reconcile of a Chute with a weights cache, planned from a snapshot alone: it joins the cache, its
Deployment waits for the weights, a revision change keeps the old pod template until the new cache is
ready, the old cache is left once nothing mounts it; the status follows."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest

from chute_operator.api import reasons as r
from chute_operator.conditions import find
from chute_operator.plan import make_plan
from chute_operator.render import render_weights
from chute_operator.report import Outcome, observation, status_events
from chute_operator.status import compute_status
from chute_operator.weights import WeightsView, is_owner, join_manifest
from chute_shared import weights as shared
from tests.unit.chute_operator.test_plan import MANAGER, NOW, _chute, _live, _snapshot

REVISION = "0123456789abcdef0123456789abcdef01234567"
OTHER = "f" * 40


def _cached(revision: str = REVISION) -> dict[str, Any]:
    return _chute(model={"name": "org/m", "revision": revision, "cache": {"size": "1Gi"}})


def _view(
    snapshot: Any, job_condition: str | None, owned: bool = True, pods: tuple[Any, ...] = ()
) -> WeightsView:
    cache = snapshot.workload.weights
    desired = tuple(render_weights(cache))
    live = []
    for manifest in desired:
        obj = join_manifest(manifest, None, snapshot.chute) if owned else dict(manifest)
        obj = _live(obj)
        if manifest["kind"] == "PersistentVolumeClaim":
            obj["status"] = {"phase": "Bound"}
        if manifest["kind"] == "Job" and job_condition:
            obj["status"] = {"conditions": [{"type": job_condition, "status": "True", "message": "m"}]}
        live.append(obj)
    return WeightsView(cache, desired, tuple(live), (), pods)


def _status(snapshot: Any, plan: Any) -> dict[str, Any]:
    return compute_status(observation(snapshot, plan, Outcome(), False), NOW)


def test_a_new_chute_joins_its_cache_and_creates_no_deployment_until_the_weights_are_ready() -> None:
    snapshot = _snapshot(_cached(), live={})
    cache = snapshot.workload.weights
    desired = tuple(render_weights(cache))
    snapshot = dataclasses.replace(snapshot, weights=WeightsView(cache, desired, (None, None, None)))
    plan = make_plan(snapshot, NOW, MANAGER)
    assert [m["kind"] for m in plan.weights_join] == ["NetworkPolicy", "PersistentVolumeClaim", "Job"]
    assert all(m["metadata"]["ownerReferences"][0]["uid"] == "u" for m in plan.weights_join)
    assert ("Deployment", "waits") in [(s.kind, s.action) for s in plan.steps]
    status = _status(snapshot, plan)
    ready, weights = find(status["conditions"], "Ready"), find(status["conditions"], "Weights")
    assert (ready["status"], ready["reason"]) == ("False", r.WEIGHTS_PENDING)
    assert (weights["status"], weights["reason"]) == ("Unknown", r.WEIGHTS_PENDING)


def test_a_second_chute_joins_an_existing_cache_with_its_owner_reference_only() -> None:
    snapshot = _snapshot(_cached(), live={})
    view = _view(snapshot, "Complete", owned=False)
    plan = make_plan(dataclasses.replace(snapshot, weights=view), NOW, MANAGER)
    assert all("spec" not in m for m in plan.weights_join)
    assert ("Deployment", "create") in [(s.kind, s.action) for s in plan.steps]


def test_ready_weights_let_the_deployment_through_and_the_chute_become_ready_when_it_serves() -> None:
    snapshot = _snapshot(_cached())
    snapshot = dataclasses.replace(snapshot, weights=_view(snapshot, "Complete"))
    plan = make_plan(snapshot, NOW, MANAGER)
    assert plan.weights_join == ()
    weights = find(_status(snapshot, plan)["conditions"], "Weights")
    assert (weights["status"], weights["reason"]) == ("True", r.WEIGHTS_READY)


def test_a_revision_change_keeps_the_old_template_until_the_new_revision_is_downloaded() -> None:
    old = _snapshot(_cached())  # every child as applied for REVISION
    new = _snapshot(_cached(OTHER), live={k: v for k, v in _live_children(old).items()})
    old_pvc = _view(old, "Complete").live_of("PersistentVolumeClaim")
    running = {"metadata": {"name": "dl"}, "status": {"phase": "Running"}}
    view = dataclasses.replace(_view(new, None, pods=(running,)), progress=(1 << 20, 4 << 20))
    snapshot = dataclasses.replace(new, weights=view, weights_owned=(old_pvc,))
    plan = make_plan(snapshot, NOW, MANAGER)
    assert ("Deployment", "waits") in [(s.kind, s.action) for s in plan.steps]
    assert plan.weights_leave == ()  # the Deployment still mounts the old cache
    status = _status(snapshot, plan)
    ready = find(status["conditions"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", r.WEIGHTS_DOWNLOADING)
    assert "1.0 MiB of 4.0 MiB (25%)" in ready["message"]
    assert find(status["conditions"], "Progressing")["reason"] == r.WEIGHTS_DOWNLOADING
    # the new cache is ready: the Deployment is applied, and once it mounts the new cache the old is left
    done = dataclasses.replace(snapshot, weights=_view(new, "Complete"))
    assert ("Deployment", "update") in [(s.kind, s.action) for s in make_plan(done, NOW, MANAGER).steps]
    moved = _live(next(m for m in new.desired if m["kind"] == "Deployment"))
    moved["status"] = {"replicas": 1, "updatedReplicas": 1}
    after = dataclasses.replace(done, deployment=moved)
    assert make_plan(after, NOW, MANAGER).weights_leave == (
        ("PersistentVolumeClaim", old_pvc["metadata"]["name"]),
    )


def _live_children(snapshot: Any) -> dict[str, Any]:
    return {f.manifest["kind"]: f.live for f in snapshot.children}


def test_a_failed_download_is_degraded_with_the_hubs_reason_and_not_ready() -> None:
    snapshot = _snapshot(_cached(), live={})
    container = {
        "name": shared.DOWNLOAD_CONTAINER,
        "state": {
            "terminated": {"message": json.dumps({"reason": shared.GATED_REPO, "message": "401 gated"})}
        },
    }
    view = _view(snapshot, "Failed")
    job = view.live_of("Job") or {}
    owner = {"kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
    meta = {"name": "dl", "ownerReferences": [owner]}
    failed = {"metadata": meta, "status": {"phase": "Failed", "containerStatuses": [container]}}
    snapshot = dataclasses.replace(snapshot, weights=dataclasses.replace(view, pods=(failed,)))
    status = _status(snapshot, make_plan(snapshot, NOW, MANAGER))
    for kind, value in (("Ready", "False"), ("Degraded", "True"), ("Stalled", "True"), ("Weights", "False")):
        condition = find(status["conditions"], kind)
        assert (condition["status"], condition["reason"], condition["message"]) == (
            value,
            "GatedRepo",
            "401 gated",
        )
    events = status_events({}, status)
    assert [(e.type, e.reason, e.message) for e in events] == [("Warning", "GatedRepo", "401 gated")]


def test_a_chute_is_an_owner_only_by_its_own_reference() -> None:
    snapshot = _snapshot(_cached(), live={})
    pvc = render_weights(snapshot.workload.weights)[1]
    assert is_owner(join_manifest(pvc, None, snapshot.chute), "u")
    assert not is_owner(pvc, "u")


def test_explain_shows_the_deployment_waiting_and_the_cache_joined() -> None:
    from chute_operator.explain_plan import format_plan

    snapshot = _snapshot(_cached(), live={})
    cache = snapshot.workload.weights
    snapshot = dataclasses.replace(
        snapshot, weights=WeightsView(cache, tuple(render_weights(cache)), (None, None, None))
    )
    plan = make_plan(snapshot, NOW, MANAGER)
    text = "\n".join(format_plan(snapshot, plan, _status(snapshot, plan)))
    assert "Deployment a: waits: not applied until its weights cache is ready" in text
    assert f"Job {cache.name}: create (weights cache)" in text
    assert "Weights Unknown (WeightsPending)" in text


def _failed_at(view: WeightsView, when: str, message: str = "hub unreachable") -> WeightsView:
    """The view with its Job Failed at ``when`` without a report of its pod (a transient failure)."""
    live = []
    for obj in view.live:
        if obj is not None and obj["kind"] == "Job":
            condition = {"type": "Failed", "status": "True", "message": message, "lastTransitionTime": when}
            obj = {**obj, "status": {"conditions": [condition]}}
        live.append(obj)
    return dataclasses.replace(view, live=tuple(live))


def _at(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_transient_download_failure_is_tried_again_after_the_retry_pause() -> None:
    """Breaking pass 29: a hub down for a minute failed the Job for good; the Chute stayed failed until
    someone deleted the Job by hand."""
    snapshot = _snapshot(_cached(), live={})
    early = dataclasses.replace(snapshot, weights=_failed_at(_view(snapshot, None), _at(100)))
    plan = make_plan(early, NOW, MANAGER)
    assert plan.weights is not None
    assert plan.weights.reason == r.DOWNLOAD_FAILED
    assert "tried again 300s after it failed" in plan.weights.message
    assert plan.weights_restart is None
    assert plan.weights_retry_seconds == pytest.approx(200)
    due = dataclasses.replace(snapshot, weights=_failed_at(_view(snapshot, None), _at(301)))
    plan = make_plan(due, NOW, MANAGER)
    job = (due.weights.live_of("Job") or {})["metadata"]
    assert plan.weights_restart is not None
    assert (plan.weights_restart.name, plan.weights_restart.version) == (job["name"], job["resourceVersion"])
    assert not plan.empty


def test_a_permanent_download_failure_waits_for_the_spec_or_a_person() -> None:
    snapshot = _snapshot(_cached(), live={})
    view = _failed_at(_view(snapshot, None), _at(3600))
    job = view.live_of("Job") or {}
    owner = {"kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
    report = json.dumps({"reason": shared.REPOSITORY_NOT_FOUND, "message": "404"})
    container = {"name": shared.DOWNLOAD_CONTAINER, "state": {"terminated": {"message": report}}}
    pod = {
        "metadata": {"name": "dl", "ownerReferences": [owner]},
        "status": {"phase": "Failed", "containerStatuses": [container]},
    }
    snapshot = dataclasses.replace(snapshot, weights=dataclasses.replace(view, pods=(pod,)))
    plan = make_plan(snapshot, NOW, MANAGER)
    assert plan.weights is not None
    assert plan.weights.reason == r.REPOSITORY_NOT_FOUND
    assert (plan.weights_restart, plan.weights_retry_seconds) == (None, None)


def test_a_claim_made_again_after_its_download_downloads_again() -> None:
    snapshot = _snapshot(_cached(), live={})
    view = _view(snapshot, "Complete")
    live = []
    for obj in view.live:
        assert obj is not None
        if obj["kind"] == "Job":
            obj = {**obj, "metadata": {**obj["metadata"], "creationTimestamp": _at(3600)}}
        if obj["kind"] == "PersistentVolumeClaim":
            obj = {**obj, "metadata": {**obj["metadata"], "creationTimestamp": _at(60)}}
        live.append(obj)
    snapshot = dataclasses.replace(snapshot, weights=dataclasses.replace(view, live=tuple(live)))
    plan = make_plan(snapshot, NOW, MANAGER)
    assert plan.weights is not None
    assert not plan.weights.ready
    assert plan.weights_restart is not None
    deployment = next(step for step in plan.steps if step.kind == "Deployment")
    assert deployment.action not in ("create", "update")  # no serving pod mounts the empty claim
