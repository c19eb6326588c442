"""Plan one reconcile of a Chute: from what was observed (a :class:`Snapshot`) to what to write (a
:class:`Plan`).

Pure: no store, no client, no clock but the ``now`` it is given. ``observe.py`` builds the snapshot,
``act.py`` carries out the plan, ``report.py`` turns what acting gave into the status and its Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from chute_operator.api import reasons
from chute_operator.drift import drifted
from chute_operator.expose import EXPOSED_KINDS, sends_to_pool
from chute_operator.rollout import RolloutObservation
from chute_operator.sidecars import SidecarChoice
from chute_operator.store import Key
from chute_operator.weights import Restart, WeightsState, WeightsView, joins, leaves, restart
from chute_operator.workload import Workload
from chute_operator.zero import (
    ABSENT,
    ACTIVATOR_SLICE_SUFFIX,
    UNREAD,
    Action,
    Activator,
    ActivatorReading,
    Reading,
    activator_slice,
    confirmed_idle,
    decide,
    sleep_manifest,
    wake_manifest,
    wake_requested_at,
    wants_activator,
)

Manifest = dict[str, Any]
PRUNABLE = ("HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy", "Service", *EXPOSED_KINDS)
"""Kinds a Chute may stop asking for: deleted when the spec no longer renders them (of Services, the
metrics Service: the Chute's own is always rendered)."""
HANDOFF_SUFFIX = "-handoff"
"""Suffix of the field manager that holds ``spec.replicas`` while an HPA takes it over."""


def owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    """Whether the Chute with this uid is the object's controller (owner reference by uid)."""
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def owns_replicas(deployment: Mapping[str, Any] | None, manager: str) -> bool:
    """Whether ``manager`` applied ``spec.replicas`` of this Deployment."""
    for entry in (deployment or {}).get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            return "f:replicas" in (fields.get("f:spec") or {})
    return False


@dataclass(frozen=True)
class Found:
    """A desired child and what the API server has under its name."""

    manifest: Manifest
    live: Manifest | None = None
    """The child, when this Chute owns it; None when nothing has its name (or see below)."""
    in_the_way: bool = False
    """An object of that name exists and this Chute does not own it: it is never written to."""
    error: Exception | None = None
    """Looking it up failed (act reports it as it would a failed apply)."""


@dataclass(frozen=True)
class Snapshot:
    """One Chute as the operator sees it at the start of a reconcile: read once, never changed."""

    key: Key
    chute: Manifest
    workload: Workload | None
    """The resolved spec; None when it is invalid (see ``invalid``)."""
    invalid: str | None
    rollout: RolloutObservation
    """What the owned Deployment and the pods said of a rollout under way (before any write)."""
    desired: tuple[Manifest, ...]
    """Every child the spec renders, stamped, in apply order."""
    children: tuple[Found, ...]
    """The desired children whose API is served (all but an optional kind's whose API is not,
    kube.OPTIONAL_KINDS), looked up."""
    deployment: Manifest | None
    """The Deployment the store holds under the Chute's name (owned or not)."""
    pods: tuple[Manifest, ...]
    prunable: Mapping[str, tuple[Manifest, ...]]
    """The store's objects of each PRUNABLE kind labelled as the Chute's."""
    activator_slice: Manifest | None
    """The store's EndpointSlice that adds the activator to the Chute's Service."""
    activator: ActivatorReading
    """The activator's ready pods (scale to zero is off while there are none); UNREAD: not read yet,
    so its EndpointSlice is left as it is."""
    activator_port: int | None = None
    """The Chute's port on the activator (``activator_ports.py``); None: it may not be at zero (not
    minInstances 0, or every port is taken: then it never sleeps, and wakes if it is at zero)."""
    idle: Mapping[str, float | None] = field(default_factory=dict)
    """Seconds each pod (by name) has served nothing, from the metrics API's readings (up to 10 s
    old); missing or None: unknown."""
    confirmed: Mapping[str, Reading] = field(default_factory=dict)
    """Each pod's sidecar read during this observation (by name), taken only when ``idle`` says the
    Chute may sleep: the sleep is decided on these."""
    sidecar: SidecarChoice | None = None
    """The sidecar image its pod template gets, and whether it is behind the operator's (sidecars.py);
    None: not decided (the status then has no SidecarCurrent condition)."""
    weights: WeightsView | None = None
    """The weights cache the spec asks for, as observed (weights.py); None: none."""
    weights_owned: tuple[Manifest, ...] = ()
    """Every weights cache object of the namespace this Chute is one of the owners of."""

    @property
    def uid(self) -> str | None:
        uid: str | None = (self.chute.get("metadata") or {}).get("uid")
        return uid

    def idle_seconds(self, namespace: str, pod: str) -> float | None:
        return self.idle.get(pod)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the Chute."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


StepAction = Literal["create", "update", "keep", "in the way", "held", "look up failed", "waits"]
"""``waits``: a Deployment not applied until its weights cache is ready (it keeps its pod template)."""


@dataclass(frozen=True)
class Step:
    """One desired child, in apply order, and what becomes of it."""

    found: Found
    action: StepAction
    handover: Manifest | None = None
    """Applied first, by the handoff field manager: the replicas an HPA takes over (see below)."""

    @property
    def kind(self) -> str:
        kind: str = self.found.manifest["kind"]
        return kind

    @property
    def name(self) -> str:
        name: str = self.found.manifest["metadata"]["name"]
        return name

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Zero:
    """Scale to zero, or wake: what the scale-to-zero field manager applies, and the Event after."""

    action: Action
    manifest: Manifest
    event: Event


@dataclass(frozen=True)
class Prune:
    """A child the spec no longer asks for, which this Chute owns: deleted."""

    kind: str
    name: str

    @property
    def event(self) -> Event:
        return Event("Normal", reasons.PRUNED, f"deleted {self.kind} {self.name}: no longer in the spec")


@dataclass(frozen=True)
class Plan:
    """What one reconcile does to a Chute's children, in order: apply the steps that drifted (the
    Deployment only once its NetworkPolicy is in place), prune, and (only when applying went
    cleanly) sleep or wake and put the activator in or out of the Service's path."""

    key: Key
    steps: tuple[Step, ...]
    prune: tuple[Prune, ...] = ()
    zero: Zero | None = None
    slice_apply: Manifest | None = None
    """The activator's EndpointSlice, to apply (it is missing or drifted)."""
    slice_delete: Key | None = None
    """The activator's EndpointSlice, to delete (a replica is ready, or scale to zero is off)."""
    unserved: tuple[str, ...] = ()
    """Kinds the spec asks for whose API is not served (ServiceMonitor, spec.expose's): left out."""
    applied: Event | None = None
    """The Event of the applies, if every one succeeds (act tells it from those that did)."""
    weights_join: tuple[Manifest, ...] = ()
    """Weights cache objects to apply with the Chute's own field manager (weights.join_manifest)."""
    weights_leave: tuple[tuple[str, str], ...] = ()
    """Weights cache objects (kind, name) whose owner reference of this Chute is removed."""
    weights: WeightsState | None = None
    """The state of the Chute's weights cache (the Weights condition); None: no cache."""
    weights_restart: Restart | None = None
    """The cache's download Job to delete, to be made again (weights.restart)."""
    weights_retry_seconds: float | None = None
    """In how many seconds a failed download is due to be tried again (None: none due)."""

    @property
    def applies(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.action in ("create", "update"))

    @property
    def conflicts(self) -> tuple[str, ...]:
        return tuple(step.label for step in self.steps if step.action == "in the way")

    @property
    def events(self) -> tuple[Event, ...]:
        """The Events of the writes, if every one succeeds (Warnings and condition transitions
        follow from the outcome and the status: report.py)."""
        events = [
            self.applied,
            *(prune.event for prune in self.prune),
            self.zero.event if self.zero else None,
        ]
        return tuple(event for event in events if event is not None)

    @property
    def empty(self) -> bool:
        return not (
            self.applies
            or self.prune
            or self.zero
            or self.slice_apply
            or self.slice_delete
            or self.weights_join
            or self.weights_leave
            or self.weights_restart
        )


def applied_event(snapshot: Snapshot, applied: list[str], updated: bool) -> Event | None:
    """The Normal event for the children applied (``applied``: their kinds; ``updated``: one of them
    existed). A new Chute's children all created at once are not news: its Ready event follows (or
    a Warning saying why not). What changes a Chute that exists is (issue 14: Events were the
    largest share of the operator's writes)."""
    if not applied:
        return None
    first = not (snapshot.chute.get("status") or {}).get("observedGeneration") and len(applied) == len(
        snapshot.children
    )
    if first and not updated:
        return None
    return Event("Normal", reasons.APPLIED, f"applied {', '.join(applied)}")


def holds(step: Step, not_in_place: set[str] | frozenset[str]) -> str | None:
    """Why the step must wait: a Deployment waits for its NetworkPolicy (a model never runs
    unprotected); an HTTPRoute or Ingress for the Service or InferencePool it sends to (never to one
    of that name that is not the Chute's). ``not_in_place``: the kinds that could not be applied so far."""
    if step.kind == "Deployment" and "NetworkPolicy" in not_in_place:
        return f"{step.label} not applied until its NetworkPolicy is in place"
    if step.kind in ("HTTPRoute", "Ingress"):
        pool = step.kind == "HTTPRoute" and sends_to_pool(step.found.manifest)
        target = "InferencePool" if pool else "Service"
        if target in not_in_place:  # one of its name that is not the Chute's would get its traffic
            return f"{step.label} not applied until the {target} it sends to is in place"
    return None


def releases_replicas(manifest: Manifest, live: Manifest | None, field_manager: str) -> bool:
    """A Deployment whose replicas we own but now leave to an HPA: applying it is due."""
    return (
        manifest["kind"] == "Deployment"
        and "replicas" not in manifest["spec"]
        and owns_replicas(live, field_manager)
    )


def handover(manifest: Manifest, live: Manifest) -> Manifest:
    """Before leaving ``spec.replicas`` to an HPA, a second manager holds its current value.

    Dropping a field we solely own from an apply removes it, and the Deployment would fall back
    to one replica until the HPA reacts. Co-owned, the value stays; the HPA's next scale takes it.
    """
    return {
        "apiVersion": manifest["apiVersion"],
        "kind": "Deployment",
        "metadata": {"name": manifest["metadata"]["name"], "namespace": manifest["metadata"]["namespace"]},
        "spec": {"replicas": (live.get("spec") or {}).get("replicas", 1)},
    }


def _step(found: Found, field_manager: str) -> Step:
    if found.error is not None:
        return Step(found, "look up failed")
    if found.in_the_way:
        return Step(found, "in the way")
    manifest, live = found.manifest, found.live
    releases = releases_replicas(manifest, live, field_manager)
    if not drifted(manifest, live) and not releases:
        return Step(found, "keep")
    if live is None:
        return Step(found, "create")
    return Step(found, "update", handover(manifest, live) if releases else None)


def plan_children(children: tuple[Found, ...], field_manager: str) -> tuple[Step, ...]:
    """A step per child, in order; a Deployment after a NetworkPolicy in the way (or that could not
    be read: act reports it as a failed apply) is held."""
    steps: list[Step] = []
    not_in_place: set[str] = set()
    for found in children:
        step = _step(found, field_manager)
        if holds(step, not_in_place):
            step = Step(found, "held")
        elif step.action in ("in the way", "look up failed"):
            not_in_place.add(step.kind)
        steps.append(step)
    return tuple(steps)


def plan_prune(snapshot: Snapshot) -> tuple[Prune, ...]:
    """The owned children of the prunable kinds that the spec does not render (none for an invalid
    spec: what it wants is unknown)."""
    if snapshot.workload is None:
        return ()
    wanted = {(f.manifest["kind"], f.manifest["metadata"]["name"]) for f in snapshot.children}
    return tuple(
        Prune(kind, child["metadata"]["name"])
        for kind in PRUNABLE
        for child in snapshot.prunable.get(kind, ())
        if (kind, child["metadata"]["name"]) not in wanted and owned_by(child, snapshot.uid)
    )


def _applied_deployment(snapshot: Snapshot, steps: tuple[Step, ...]) -> Manifest | None:
    """The Deployment as applying leaves it, as far as scale to zero reads it: its replicas (the
    manifest's if it sets them, else as they were, or the API server's default of 1 for a new one)
    and the scale-to-zero manager's annotation (server-side apply keeps other managers' fields)."""
    step = next((s for s in steps if s.kind == "Deployment" and s.action in ("create", "update")), None)
    if step is None:
        return snapshot.deployment
    manifest, live = step.found.manifest, step.found.live or {}
    base = live or manifest
    spec = {**(base.get("spec") or {})}
    spec["replicas"] = manifest["spec"].get("replicas", spec.get("replicas", 1))
    return {**base, "spec": spec}


def _route_still_to_pool(snapshot: Snapshot) -> bool:
    """Whether the Chute's own HTTPRoute, as the API server has it, still sends to its InferencePool
    (which has no pod once the Chute is at zero), or may: a Chute with a route to a pool whose
    HTTPRoute API is read as not served cannot see its live route (a discovery that fails for a
    moment), and keeps its replica."""
    workload = snapshot.workload
    if (
        workload is not None
        and workload.http_route is not None
        and workload.inference_pool is not None
        and "HTTPRoute" in unserved_kinds(snapshot)
    ):
        return True
    return any(
        found.manifest["kind"] == "HTTPRoute" and found.live is not None and sends_to_pool(found.live)
        for found in snapshot.children
    )


def plan_zero(snapshot: Snapshot, steps: tuple[Step, ...], now: datetime) -> Zero | None:
    """Idle for shutdownAfterSeconds (by the metrics API's readings, confirmed by each sidecar read
    just now) -> replicas 0; a wake request -> back to the HPA (zero.py has the rules), decided on
    the Deployment as applying leaves it."""
    deployment = _applied_deployment(snapshot, steps)
    workload, activator = snapshot.workload, snapshot.activator
    has_port = snapshot.activator_port is not None
    action = decide(
        workload, snapshot.chute, deployment, snapshot.pods, snapshot.idle_seconds, activator, has_port
    )
    seconds = workload.shutdown_after_seconds if workload else 0
    if action is Action.SLEEP and not confirmed_idle(snapshot.pods, snapshot.confirmed, seconds, now):
        return None  # the sidecars, read just now, do not all confirm the window
    if action is Action.SLEEP and _route_still_to_pool(snapshot):
        return None  # its HTTPRoute moves to the Service first (pool_route.py); it sleeps after
    if action is Action.STAY or deployment is None:
        return None
    if action is Action.SLEEP:
        message = f"every replica idle for {seconds}s: scaled to zero; the next request wakes it"
        return Zero(action, sleep_manifest(deployment, now), Event("Normal", reasons.SCALED_TO_ZERO, message))
    asked = wake_requested_at(snapshot.chute)
    why = f"a request is waiting (asked at {asked:%H:%M:%S})" if asked else "minInstances is not 0"
    if activator is ABSENT:
        why = "no activator is installed, so no request could wake it"
    elif workload is not None and workload.scale_to_zero and snapshot.activator_port is None:
        why = "it has no port on the activator (the range is full or changed), so no request could wake it"
    return Zero(
        action, wake_manifest(deployment), Event("Normal", reasons.WAKING, f"{why}: scaling to 1 replica")
    )


def plan_slice(
    snapshot: Snapshot, steps: tuple[Step, ...], zero: Zero | None
) -> tuple[Manifest | None, Key | None]:
    """The activator's EndpointSlice while nothing serves a Chute that may be at zero: (to apply,
    to delete). The Deployment is judged as the zero step leaves it (asleep after a sleep, awake
    after a wake: the zero manager's manifest says which). Nothing while the activator is UNREAD:
    an operator that has just started must not take the activator out of a Chute at zero."""
    if snapshot.activator is UNREAD:
        return None, None
    deployment = zero.manifest if zero else _applied_deployment(snapshot, steps)
    workload, activator = snapshot.workload, snapshot.activator
    wanted = workload is not None and wants_activator(workload, deployment, snapshot.pods)
    port = snapshot.activator_port
    if wanted and workload is not None and isinstance(activator, Activator) and activator.addresses and port:
        desired = activator_slice(workload, activator, port)
        return (desired if drifted(desired, snapshot.activator_slice) else None), None
    actual = snapshot.activator_slice
    if actual is not None and owned_by(actual, snapshot.uid):
        return None, (snapshot.key[0], snapshot.key[1] + ACTIVATOR_SLICE_SUFFIX)
    return None, None


def unserved_kinds(snapshot: Snapshot) -> tuple[str, ...]:
    """The kinds rendered but left out of the children (their API is not served), in apply order."""
    served = {found.manifest["kind"] for found in snapshot.children}
    return tuple(dict.fromkeys(m["kind"] for m in snapshot.desired if m["kind"] not in served))


def wait_for_weights(steps: tuple[Step, ...], state: WeightsState | None) -> tuple[Step, ...]:
    """Until its weights cache is ready, the Deployment is not applied: a new Chute gets none yet, a
    revision change keeps the old revision's pod template (and cache) serving."""
    if state is None or state.ready:
        return steps
    return tuple(
        Step(step.found, "waits")
        if step.kind == "Deployment" and step.action in ("create", "update")
        else step
        for step in steps
    )


def make_plan(snapshot: Snapshot, now: datetime, field_manager: str) -> Plan:
    """What to do to the Chute's children, from the snapshot alone."""
    view = snapshot.weights
    state = view.state() if view is not None else None
    steps = wait_for_weights(plan_children(snapshot.children, field_manager), state)
    zero = plan_zero(snapshot, steps, now)
    slice_apply, slice_delete = plan_slice(snapshot, steps, zero)
    applies = [step for step in steps if step.action in ("create", "update")]
    again, retry_seconds = (
        restart(view, state, now) if view is not None and state is not None else (None, None)
    )
    return Plan(
        key=snapshot.key,
        steps=steps,
        prune=plan_prune(snapshot),
        zero=zero,
        slice_apply=slice_apply,
        slice_delete=slice_delete,
        unserved=unserved_kinds(snapshot),
        applied=applied_event(
            snapshot, [s.kind for s in applies], any(s.action == "update" for s in applies)
        ),
        weights_join=joins(view, snapshot.chute) if view is not None else (),
        weights_leave=(
            leaves(
                snapshot.weights_owned, view.cache if view else None, snapshot.deployment, rolling(snapshot)
            )
            if snapshot.workload is not None
            else ()
        ),
        weights=state,
        weights_restart=again,
        weights_retry_seconds=retry_seconds,
    )


def rolling(snapshot: Snapshot) -> bool:
    """Pods of more than one template may run: an old revision's pods may still mount its cache."""
    status = (snapshot.deployment or {}).get("status") or {}
    replicas, updated = status.get("replicas") or 0, status.get("updatedReplicas") or 0
    return snapshot.rollout.in_progress or replicas != updated
