"""The plan of a reconcile, from a snapshot alone: no store, no cluster, no clock."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from chute_operator.api import reasons
from chute_operator.drift import stamped
from chute_operator.explain_plan import format_plan
from chute_operator.gpus import builtin_catalog
from chute_operator.plan import Found, Plan, Snapshot, Step, applied_event, holds, make_plan
from chute_operator.render import render_workload
from chute_operator.report import Outcome, expected_outcome, observation, status_wait
from chute_operator.rollout import observe
from chute_operator.status import compute_status
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions, resolve
from chute_operator.zero import (
    ABSENT,
    ASLEEP_ANNOTATION,
    UNREAD,
    Action,
    Activator,
    ActivatorReading,
    Reading,
)
from chute_shared.cluster import WAKE_ANNOTATION
from tests.chutes import cpu_chute

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OPTIONS = RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test")
MANAGER = "chute-operator"
ACTIVATOR = Activator(("10.244.0.7",))
PORT = 20007
"""The Chute's port on the activator (activator_ports.py)."""
LABELS = {"chutes.ai/chute": "a", "app.kubernetes.io/managed-by": "chute-operator"}


def _chute(**spec: Any) -> dict[str, Any]:
    metadata = {"namespace": "ns", "uid": "u", "generation": 1, "resourceVersion": "1"}
    return cpu_chute("a", metadata, monitoring={"serviceMonitor": False}, **spec)


def _live(manifest: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """The child as the API server would have it after applying ``manifest``."""
    live = copy.deepcopy(manifest)
    live["metadata"].update(uid=f"uid-{manifest['kind']}", resourceVersion="100", generation=1)
    if manifest["kind"] == "Deployment":
        live["spec"].setdefault("replicas", 1)  # as the API server defaults it
    live.setdefault("spec", {}).update(spec)
    return live


def _pod(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": LABELS},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def _snapshot(
    chute: dict[str, Any] | None = None,
    live: dict[str, dict[str, Any] | None] | None = None,
    in_the_way: tuple[str, ...] = (),
    pods: tuple[dict[str, Any], ...] = (),
    prunable: dict[str, tuple[dict[str, Any], ...]] | None = None,
    activator: ActivatorReading = None,
    activator_slice: dict[str, Any] | None = None,
    idle: dict[str, float | None] | None = None,
    confirmed: dict[str, Reading] | None = None,
    activator_port: int | None = PORT,
) -> Snapshot:
    """A Chute whose children are ``live`` (kind -> object; missing: none), as observe.py would
    see it. With ``live=None``: every child as last applied (nothing drifted). ``confirmed``: each
    sidecar read just now (by default: as ``idle`` says, read at NOW)."""
    chute = chute or _chute()
    rollout = observe(None, list(pods))
    workload = resolve(parse_chute(chute), OPTIONS, rollout)
    desired = tuple(stamped(m) for m in render_workload(workload))
    if live is None:
        live = {m["kind"]: _live(m) for m in desired}
    children = tuple(
        Found(m, in_the_way=True) if m["kind"] in in_the_way else Found(m, live.get(m["kind"]))
        for m in desired
    )
    return Snapshot(
        key=("ns", "a"),
        chute=chute,
        workload=workload,
        invalid=None,
        rollout=rollout,
        desired=desired,
        children=children,
        deployment=live.get("Deployment"),
        pods=pods,
        prunable=prunable or {},
        activator_slice=activator_slice,
        activator=activator,
        activator_port=activator_port,
        idle=idle or {},
        confirmed={k: Reading(v, NOW) for k, v in (idle or {}).items()} if confirmed is None else confirmed,
    )


def _actions(plan: Plan) -> list[tuple[str, str]]:
    return [(step.kind, step.action) for step in plan.steps]


def test_a_new_chute_creates_every_child_in_order_and_announces_nothing() -> None:
    snapshot = _snapshot(live={})
    plan = make_plan(snapshot, NOW, MANAGER)
    assert _actions(plan) == [
        ("NetworkPolicy", "create"),
        ("Service", "create"),
        ("Deployment", "create"),
        ("HorizontalPodAutoscaler", "create"),
    ]
    assert (plan.prune, plan.zero, plan.slice_apply, plan.slice_delete) == ((), None, None, None)
    applied = [step.kind for step in plan.applies]
    assert applied_event(snapshot, applied, updated=False) is None  # the first creation is not news
    assert plan.events == ()


def test_an_unchanged_chute_has_an_empty_plan() -> None:
    plan = make_plan(_snapshot(), NOW, MANAGER)
    assert plan.empty
    assert {step.action for step in plan.steps} == {"keep"}


def test_a_drifted_deployment_alone_is_applied() -> None:
    snapshot = _snapshot()
    live = {f.manifest["kind"]: f.live for f in snapshot.children}
    deployment = copy.deepcopy(live["Deployment"])
    assert deployment is not None
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "edited-by-hand"
    plan = make_plan(_snapshot(live={**live, "Deployment": deployment}), NOW, MANAGER)
    assert [(step.kind, step.action) for step in plan.applies] == [("Deployment", "update")]
    assert plan.applies[0].handover is None
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Normal", "Applied", "applied Deployment")
    ]
    event = applied_event(snapshot, ["Deployment"], updated=True)
    assert event is not None
    assert event.reason == reasons.APPLIED


def test_replicas_we_owned_are_handed_over_before_an_hpa_takes_them() -> None:
    snapshot = _snapshot()
    deployment = copy.deepcopy(snapshot.deployment)
    assert deployment is not None
    deployment["spec"]["replicas"] = 3
    fields: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
    deployment["metadata"]["managedFields"] = [{"manager": MANAGER, "operation": "Apply", "fieldsV1": fields}]
    live = {f.manifest["kind"]: f.live for f in snapshot.children}
    plan = make_plan(_snapshot(live={**live, "Deployment": deployment}), NOW, MANAGER)
    (step,) = plan.applies
    assert step.handover is not None
    assert step.handover["spec"] == {"replicas": 3}


def test_an_hpa_the_spec_no_longer_asks_for_is_pruned() -> None:
    fixed = _chute(minInstances=2, maxInstances=2)
    hpa = _live(next(m for m in _snapshot().desired if m["kind"] == "HorizontalPodAutoscaler"))
    stranger = copy.deepcopy(hpa)
    stranger["metadata"].update(name="other", ownerReferences=[])
    plan = make_plan(_snapshot(fixed, prunable={"HorizontalPodAutoscaler": (hpa, stranger)}), NOW, MANAGER)
    assert [(p.kind, p.name) for p in plan.prune] == [("HorizontalPodAutoscaler", "a")]  # only what it owns
    assert [event.reason for event in plan.events] == [reasons.PRUNED]


def _scale_to_zero(**spec: Any) -> dict[str, Any]:
    return _chute(minInstances=0, maxInstances=2, shutdownAfterSeconds=60, **spec)


def test_every_replica_idle_long_enough_sleeps_and_the_activator_steps_in() -> None:
    snapshot = _snapshot(_scale_to_zero(), pods=(_pod("a-1"),), activator=ACTIVATOR, idle={"a-1": 61.0})
    plan = make_plan(snapshot, NOW, MANAGER)
    assert plan.zero is not None
    assert plan.zero.action is Action.SLEEP
    assert plan.zero.manifest["spec"] == {"replicas": 0}
    assert plan.zero.event.reason == reasons.SCALED_TO_ZERO
    assert plan.slice_apply is not None  # asleep: the Service reaches the activator
    assert plan.slice_apply["endpoints"] == [{"addresses": ["10.244.0.7"], "conditions": {"ready": True}}]


def test_no_sleep_before_the_window_nor_without_an_activator() -> None:
    chute, pods = _scale_to_zero(), (_pod("a-1"),)
    assert (
        make_plan(_snapshot(chute, pods=pods, activator=ACTIVATOR, idle={"a-1": 30.0}), NOW, MANAGER).zero
        is None
    )
    assert make_plan(_snapshot(chute, pods=pods, idle={"a-1": 61.0}), NOW, MANAGER).zero is None


def _asleep(snapshot: Snapshot) -> dict[str, dict[str, Any] | None]:
    live = {f.manifest["kind"]: f.live for f in snapshot.children}
    deployment = copy.deepcopy(live["Deployment"])
    assert deployment is not None
    deployment["spec"]["replicas"] = 0
    deployment["metadata"].setdefault("annotations", {})[ASLEEP_ANNOTATION] = "2026-01-01T11:00:00.000000Z"
    return {**live, "Deployment": deployment}


def test_a_chute_at_zero_with_no_activator_installed_wakes_and_none_goes_to_zero() -> None:
    """The chart's activator turned off (or never installed) while Chutes are at zero: no request could
    wake them, so the operator does, and says why (before, they stayed at zero for good)."""
    chute = _scale_to_zero()
    asleep = make_plan(_snapshot(chute, live=_asleep(_snapshot(chute)), activator=ABSENT), NOW, MANAGER)
    assert asleep.zero is not None
    assert asleep.zero.action is Action.WAKE
    assert "no activator is installed" in asleep.zero.event.message
    idle = _snapshot(chute, pods=(_pod("a-1"),), activator=ABSENT, idle={"a-1": 61.0})
    assert make_plan(idle, NOW, MANAGER).zero is None
    present = make_plan(_snapshot(chute, live=_asleep(_snapshot(chute)), activator=ACTIVATOR), NOW, MANAGER)
    assert present.zero is None  # with an activator it stays at zero until a request asks


def test_a_request_waiting_wakes_a_chute_at_zero() -> None:
    asleep = _asleep(_snapshot(_scale_to_zero()))
    woken = _scale_to_zero()
    woken["metadata"]["annotations"] = {WAKE_ANNOTATION: "2026-01-01T11:59:00Z"}
    plan = make_plan(_snapshot(woken, live=asleep, activator=ACTIVATOR), NOW, MANAGER)
    assert plan.zero is not None
    assert plan.zero.action is Action.WAKE
    assert "replicas" not in plan.zero.manifest.get("spec", {})  # the HPA owns them again
    assert plan.zero.event.reason == reasons.WAKING
    assert plan.slice_apply is not None  # no replica ready yet: the activator holds the request
    unrequested = make_plan(_snapshot(_scale_to_zero(), live=asleep, activator=ACTIVATOR), NOW, MANAGER)
    assert unrequested.zero is None


def test_the_activator_leaves_the_path_once_a_replica_is_ready() -> None:
    chute = _scale_to_zero()
    in_path = make_plan(_snapshot(chute, activator=ACTIVATOR), NOW, MANAGER).slice_apply
    assert in_path is not None  # no pod ready: the Service reaches the activator
    owned = _live(in_path)
    unchanged = make_plan(_snapshot(chute, activator=ACTIVATOR, activator_slice=owned), NOW, MANAGER)
    assert unchanged.slice_apply is None
    assert unchanged.slice_delete is None
    ready = make_plan(
        _snapshot(chute, pods=(_pod("a-1"),), activator=ACTIVATOR, activator_slice=owned), NOW, MANAGER
    )
    assert ready.slice_apply is None
    assert ready.slice_delete == ("ns", "a-activator")


def test_the_activator_slice_names_the_chutes_own_port_and_without_one_there_is_none() -> None:
    """The activator knows a Chute by the port its connections arrive on: the slice sends the
    Service's traffic to the Chute's port. Without a port (every one taken) the Chute never goes to
    zero, and a slice it had (another Chute's port now, perhaps) is removed."""
    chute = _scale_to_zero()
    in_path = make_plan(_snapshot(chute, activator=ACTIVATOR), NOW, MANAGER).slice_apply
    assert in_path is not None
    assert in_path["ports"] == [{"name": "http", "port": PORT, "protocol": "TCP"}]
    moved = make_plan(
        _snapshot(chute, activator=ACTIVATOR, activator_slice=_live(in_path), activator_port=20008),
        NOW,
        MANAGER,
    )
    assert moved.slice_apply is not None
    assert moved.slice_apply["ports"][0]["port"] == 20008


def test_an_object_in_the_way_is_a_conflict_and_never_written() -> None:
    snapshot = _snapshot(live={}, in_the_way=("Service",))
    plan = make_plan(snapshot, NOW, MANAGER)
    assert plan.conflicts == ("Service a",)
    assert "Service" not in [step.kind for step in plan.applies]
    status = compute_status(observation(snapshot, plan, expected_outcome(snapshot, plan), False), NOW)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == reasons.CHILD_CONFLICT


def test_a_network_policy_in_the_way_holds_the_deployment() -> None:
    plan = make_plan(_snapshot(live={}, in_the_way=("NetworkPolicy",)), NOW, MANAGER)
    assert _actions(plan)[:3] == [
        ("NetworkPolicy", "in the way"),
        ("Service", "create"),
        ("Deployment", "held"),
    ]


def test_a_network_policy_that_cannot_be_read_holds_the_deployment_in_the_plan_too() -> None:
    """observe.py does not look up a Deployment whose NetworkPolicy could not be read, and act holds
    it back: the plan (and ``explain --plan``) says so instead of announcing its creation."""
    snapshot = _snapshot(live={})
    failed = tuple(
        Found(f.manifest, error=PermissionError("forbidden")) if f.manifest["kind"] == "NetworkPolicy" else f
        for f in snapshot.children
    )
    snapshot = dataclasses.replace(snapshot, children=failed)
    plan = make_plan(snapshot, NOW, MANAGER)
    assert _actions(plan)[:3] == [
        ("NetworkPolicy", "look up failed"),
        ("Service", "create"),
        ("Deployment", "held"),
    ]
    status = compute_status(observation(snapshot, plan, expected_outcome(snapshot, plan), False), NOW)
    text = format_plan(snapshot, plan, status)
    assert "  Deployment a: held: not applied until its NetworkPolicy is in place" in text


def test_a_network_policy_that_fails_to_apply_holds_the_deployment() -> None:
    plan = make_plan(_snapshot(live={}), NOW, MANAGER)
    deployment = next(step for step in plan.steps if step.kind == "Deployment")
    assert deployment.action == "create"  # planned, but act asks first whether its NetworkPolicy is in
    assert (
        holds(deployment, {"NetworkPolicy"}) == "Deployment a not applied until its NetworkPolicy is in place"
    )
    assert holds(deployment, {"Service"}) is None
    service = next(step for step in plan.steps if step.kind == "Service")
    assert holds(service, {"NetworkPolicy"}) is None


def test_scale_to_zero_acts_only_after_a_clean_apply() -> None:
    assert Outcome().clean
    assert not Outcome(failures=["applying Service a: refused"]).clean
    assert not Outcome(conflicts=["Service a"]).clean
    assert not Outcome(retry=TimeoutError()).clean


def test_a_status_waits_for_the_deployment_just_applied_within_its_bound() -> None:
    deployment = {"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}
    assert status_wait(None, 10.0, 5.0, deployment, Outcome()) is None  # nothing applied
    assert status_wait(9.0, 10.0, 5.0, deployment, Outcome()) == 4.0
    assert status_wait(4.0, 10.0, 5.0, deployment, Outcome()) is None  # waited long enough
    observed = {"metadata": {"generation": 2}, "status": {"observedGeneration": 2}}
    assert status_wait(9.0, 10.0, 5.0, observed, Outcome()) is None
    assert status_wait(9.0, 10.0, 5.0, deployment, Outcome(failures=["x"])) is None  # report at once


def test_a_step_is_labelled_by_kind_and_name() -> None:
    manifest = {"kind": "Service", "metadata": {"name": "a"}}
    assert Step(Found(manifest), "keep").label == "Service a"


def _text(snapshot: Snapshot) -> list[str]:
    plan = make_plan(snapshot, NOW, MANAGER)
    status = compute_status(observation(snapshot, plan, expected_outcome(snapshot, plan), False), NOW)
    return format_plan(snapshot, plan, status)


def test_the_plan_as_text_tells_each_childs_fate_the_events_and_the_status() -> None:
    fixed = _chute(minInstances=2, maxInstances=2)
    hpa = _live(next(m for m in _snapshot().desired if m["kind"] == "HorizontalPodAutoscaler"))
    snapshot = _snapshot(
        fixed, live={}, in_the_way=("Service",), prunable={"HorizontalPodAutoscaler": (hpa,)}
    )
    assert _text(snapshot) == [
        "Plan for Chute ns/a (generation 1):",
        "  NetworkPolicy a: create",
        "  Service a: in the way: exists and is not owned by this Chute, left untouched",
        "  Deployment a: create",
        "  HorizontalPodAutoscaler a: delete (no longer in the spec)",
        "  Event Normal Applied: applied NetworkPolicy, Deployment",  # not all children: news
        "  Event Normal Pruned: deleted HorizontalPodAutoscaler a: no longer in the spec",
        "  Event Warning ChildConflict: Service a exists and is not owned by this Chute: left untouched "
        "(delete or rename it, or give the Chute another name)",
        "Status it expects (to be written):",
        "  Ready False (ChildConflict): Service a exists and is not owned by this Chute: left untouched "
        "(delete or rename it, or give the Chute another name)",
        "  Available False (NoReplicasReady): no replica is ready yet",
        "  Progressing True (Creating): creating the Deployment",
        "  Degraded True (ChildConflict): Service a exists and is not owned by this Chute: left untouched "
        "(delete or rename it, or give the Chute another name)",
        "  Reconciling False (Reconciled)",
        "  Stalled True (ChildConflict): Service a exists and is not owned by this Chute: left untouched "
        "(delete or rename it, or give the Chute another name)",
    ]


def test_the_plan_as_text_of_an_unchanged_chute_and_of_a_sleep() -> None:
    assert "  nothing to write to the children" in _text(_snapshot())
    asleep = _snapshot(_scale_to_zero(), pods=(_pod("a-1"),), activator=ACTIVATOR, idle={"a-1": 61.0})
    text = _text(asleep)
    assert (
        "  Deployment a: sleep (once applying succeeds): every replica idle for 60s: scaled to zero; "
        "the next request wakes it"
    ) in text
    assert "  EndpointSlice a-activator: apply (once applying succeeds) (the activator)" in text


def test_a_chute_at_zero_given_fixed_replicas_is_not_woken_by_the_zero_manager() -> None:
    """Applying the fixed replicas takes spec.replicas from the scale-to-zero manager: the Deployment
    applying leaves is awake, as the reconciler before observe, plan, act judged it."""
    asleep = _asleep(_snapshot(_scale_to_zero()))
    plan = make_plan(_snapshot(_chute(minInstances=2, maxInstances=2), live=asleep), NOW, MANAGER)
    assert ("Deployment", "update") in _actions(plan)
    assert plan.zero is None
    woken = make_plan(_snapshot(_chute(minInstances=1, maxInstances=2), live=asleep), NOW, MANAGER)
    assert woken.zero is not None  # autoscaled from 1: the HPA gets the replicas back
    assert woken.zero.action is Action.WAKE


def test_an_activator_not_read_yet_leaves_its_slice_as_it_is() -> None:
    """An operator that has just started (or just become leader) has not read the activator's
    endpoints: it neither removes the slice of a Chute at zero nor applies one (issue 25)."""
    chute = _scale_to_zero()
    owned = _live(make_plan(_snapshot(chute, activator=ACTIVATOR), NOW, MANAGER).slice_apply or {})
    asleep = _asleep(_snapshot(chute))
    for snapshot in (
        _snapshot(chute, live=asleep, activator=UNREAD, activator_slice=owned),  # at zero
        _snapshot(chute, pods=(_pod("a-1"),), activator=UNREAD, activator_slice=owned),  # serving
        _snapshot(chute, live=asleep, activator=UNREAD),  # at zero, no slice yet
    ):
        plan = make_plan(snapshot, NOW, MANAGER)
        assert (plan.slice_apply, plan.slice_delete) == (None, None)
    idle = _snapshot(chute, pods=(_pod("a-1"),), activator=UNREAD, idle={"a-1": 61.0})
    assert make_plan(idle, NOW, MANAGER).zero is None  # never to zero without a known activator


def test_an_activator_read_with_no_ready_pod_removes_its_slice() -> None:
    chute = _scale_to_zero()
    owned = _live(make_plan(_snapshot(chute, activator=ACTIVATOR), NOW, MANAGER).slice_apply or {})
    asleep = _asleep(_snapshot(chute))
    for none in (None, Activator(())):
        plan = make_plan(_snapshot(chute, live=asleep, activator=none, activator_slice=owned), NOW, MANAGER)
        assert (plan.slice_apply, plan.slice_delete) == (None, ("ns", "a-activator"))


def test_a_request_that_began_after_the_metrics_apis_reading_keeps_the_chute_up() -> None:
    """The metrics API read the sidecar 8 s ago, idle for 55 s then: 63 s by its count, past the
    60 s window. A request began 3 s ago, just before the window ended: only the sidecar read now
    shows it (issue 25)."""
    chute, pods, read_now = _scale_to_zero(), (_pod("a-1"),), NOW - timedelta(seconds=0.05)
    for now in ({"a-1": Reading(None, read_now)}, {"a-1": Reading(1.5, read_now)}):  # busy; ended
        snapshot = _snapshot(chute, pods=pods, activator=ACTIVATOR, idle={"a-1": 63.0}, confirmed=now)
        assert make_plan(snapshot, NOW, MANAGER).zero is None
    old = {"a-1": Reading(63.0, NOW - timedelta(seconds=8))}  # the cached reading itself: too old
    assert (
        make_plan(
            _snapshot(chute, pods=pods, activator=ACTIVATOR, idle={"a-1": 63.0}, confirmed=old), NOW, MANAGER
        ).zero
        is None
    )
    quiet = {"a-1": Reading(63.0, read_now)}
    asleep = make_plan(
        _snapshot(chute, pods=pods, activator=ACTIVATOR, idle={"a-1": 63.0}, confirmed=quiet), NOW, MANAGER
    )
    assert asleep.zero is not None
    assert asleep.zero.action is Action.SLEEP
