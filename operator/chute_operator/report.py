"""What a reconcile reports once it has acted: the status, its Events, and when to write it.

Pure: functions of the snapshot, the plan and the :class:`Outcome` of carrying it out (``act.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chute_operator.api import reasons
from chute_operator.conditions import find
from chute_operator.expose import EXPOSED_KINDS
from chute_operator.plan import Event, Manifest, Plan, Snapshot, holds, owned_by
from chute_operator.status import Observation
from chute_shared.cluster import CHUTE_LABEL

QUIET_REASONS = reasons.PROGRESS_REASONS | {
    reasons.SIDECAR_BEHIND,
    reasons.SIDECAR_ROLLING,
    reasons.MONITORING_UNAVAILABLE,
    *reasons.API_UNAVAILABLE.values(),
    reasons.AUTOSCALER_PENDING,
    reasons.SCALING_DISABLED,
}
"""Reasons announced as Normal events, not Warnings."""
HELD = frozenset({"NetworkPolicy", "Service", "InferencePool"})
"""Kinds not in place when a planned step is held (for plan.holds)."""


@dataclass
class Outcome:
    """What carrying out a plan gave."""

    conflicts: list[str] = field(default_factory=list)
    """Objects (``Kind name``) in the way that this Chute does not own: left untouched."""
    failures: list[str] = field(default_factory=list)
    """Reported apply errors, one per child."""
    retry: BaseException | None = None
    """The first error that is worth trying again."""
    unserved: set[str] = field(default_factory=set)
    """Optional kinds whose API went away while applying."""
    not_in_place: set[str] = field(default_factory=set)
    """Kinds that could not be applied."""
    changed: list[str] = field(default_factory=list)
    """Kinds applied, in order."""
    updated: bool = False
    """One of them existed before (the others were created)."""
    deployment_applied_at: float | None = None
    """When the Deployment was applied (monotonic seconds), if it was."""
    deployment: Manifest | None = None
    """The Deployment, as the store holds it once acting is done (so are the HPA and pods)."""
    hpa: Manifest | None = None
    pods: list[Manifest] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Applying left nothing to report or retry (scale to zero acts only then)."""
        return not (self.failures or self.conflicts or self.retry is not None)


def conflict_message(labels: list[str]) -> str | None:
    if not labels:
        return None
    objects = ", ".join(labels)
    verb = "exists" if len(labels) == 1 else "exist"
    return (
        f"{objects} {verb} and {'is' if len(labels) == 1 else 'are'} not owned by this Chute: left untouched "
        "(delete or rename it, or give the Chute another name)"
    )


def warnings(chute: Manifest, outcome: Outcome) -> list[Event]:
    """One Warning per conflict or failure that the current status does not already show."""
    shown = {
        c.get("type"): c.get("message") or "" for c in (chute.get("status") or {}).get("conditions") or []
    }
    degraded = shown.get(reasons.DEGRADED, "")
    events = [
        Event("Warning", reasons.CHILD_CONFLICT, conflict_message([label]) or "")
        for label in outcome.conflicts
        if label not in degraded
    ]
    events += [
        Event("Warning", reasons.APPLY_FAILED, message)
        for message in outcome.failures
        if message not in degraded
    ]
    return events


def _exposed(label: str) -> str:
    """The exposed kind of a conflict (``Kind name``) or failure (``applying Kind name: ...``); ''
    for another kind's."""
    kind = label.removeprefix("applying ").split(" ", 1)[0]
    return kind if kind in EXPOSED_KINDS else ""


def owned_deployment(snapshot: Snapshot, outcome: Outcome) -> Manifest | None:
    """The Deployment after acting, if this Chute owns it."""
    deployment = outcome.deployment
    return deployment if deployment and owned_by(deployment, snapshot.uid) else None


def observation(snapshot: Snapshot, plan: Plan, outcome: Outcome, template_settled: bool) -> Observation:
    """What the status is computed from (status.compute_status)."""
    hpa = outcome.hpa
    return Observation(
        generation=snapshot.chute["metadata"].get("generation"),
        selector=f"{CHUTE_LABEL}={snapshot.key[1]}",
        workload=snapshot.workload,
        invalid_spec=snapshot.invalid,
        apply_error="; ".join(outcome.failures) or None,
        child_conflict=conflict_message(outcome.conflicts),
        deployment=owned_deployment(snapshot, outcome),
        pods=outcome.pods,
        previous=snapshot.chute.get("status") or {},
        monitoring_unavailable="ServiceMonitor" in {*plan.unserved, *outcome.unserved},
        unexposed=tuple(k for k in EXPOSED_KINDS if k in {*plan.unserved, *outcome.unserved}),
        exposed_problems=(
            *(
                (_exposed(c), reasons.CHILD_CONFLICT, conflict_message([c]) or c)
                for c in outcome.conflicts
                if _exposed(c)
            ),
            *((_exposed(f), reasons.APPLY_FAILED, f) for f in outcome.failures if _exposed(f)),
        ),
        hpa=hpa if hpa and owned_by(hpa, snapshot.uid) else None,
        rollout=snapshot.rollout,
        template_settled=template_settled,
        activator_port=snapshot.activator_port,
        sidecar=snapshot.sidecar,
        weights=plan.weights,
    )


def status_wait(
    applied_at: float | None, now: float, bound: float, deployment: Manifest | None, outcome: Outcome
) -> float | None:
    """Seconds the status write waits for the controller of the Deployment just applied (at
    ``applied_at``, monotonic seconds); None: write it now.

    Until the Deployment's controller observes the new generation, its status tells of the
    Deployment as it was: a status written now would say so, and the one written when the
    controller answers (its status change wakes the Chute) would follow at once. At 1000 new
    Chutes, status patches on the way to Ready fell from 2.8 to 1.4-1.5 per Chute
    (docs/benchmarks/operator.md). Anything to report (a failure, a conflict) is written at
    once; the wait is bounded by ``bound`` seconds.
    """
    if applied_at is None:
        return None
    left = bound - (now - applied_at)
    observed = ((deployment or {}).get("status") or {}).get("observedGeneration") or 0
    generation = ((deployment or {}).get("metadata") or {}).get("generation") or 0
    if deployment is None or observed >= generation or left <= 0 or not outcome.clean:
        return None
    return left


def status_events(previous: dict[str, Any], status: dict[str, Any]) -> list[Event]:
    """The Events of a status written over ``previous``: the transitions of Ready, Monitored, Exposed,
    Autoscaling, SidecarCurrent and Supported that are news."""
    events: list[Event] = []
    kinds = (
        reasons.READY,
        reasons.MONITORED,
        reasons.EXPOSED,
        reasons.AUTOSCALING,
        reasons.SIDECAR_CURRENT,
        reasons.SUPPORTED,
    )
    for kind in kinds:
        before = find(previous.get("conditions") or [], kind) or {}
        after = find(status["conditions"], kind)
        if after is None or (before.get("status"), before.get("reason")) == (
            after["status"],
            after["reason"],
        ):
            continue
        if (
            kind in (reasons.MONITORED, reasons.EXPOSED, reasons.SIDECAR_CURRENT)
            and after["status"] == "True"
            and not before
        ):
            continue  # monitoring or exposure working from the start is not news, nor a new Chute's sidecar
        if kind == reasons.AUTOSCALING and not before and after["status"] != "False":
            continue  # nor is an autoscaler that starts pending or working
        if (
            kind == reasons.AUTOSCALING
            and before.get("reason") == reasons.AUTOSCALER_PENDING
            and after["reason"] == reasons.SCALING_ACTIVE
        ):
            continue  # nor one that, once a replica is ready, starts working as it should
        if kind in (reasons.READY, reasons.EXPOSED) and after["reason"] in (
            reasons.CHILD_CONFLICT,
            reasons.APPLY_FAILED,
        ):
            continue  # each conflict and failure has its own event (warnings)
        if (
            kind == reasons.READY
            and after["status"] != "True"
            and after["reason"] in reasons.PROGRESS_REASONS
        ):
            continue  # on its way up (Creating, RollingOut, ModelLoading...): the status shows each
            # step; the Ready event says it arrived
        quiet = after["status"] == "True" or after["reason"] in QUIET_REASONS
        reason = kind if after["status"] == "True" else after["reason"]
        events.append(Event("Normal" if quiet else "Warning", reason, after["message"] or reason))
    return events


def expected_outcome(snapshot: Snapshot, plan: Plan) -> Outcome:
    """The outcome if every write of the plan succeeds (what ``explain --plan`` shows the status of):
    the conflicts and held children the plan knows of, the objects as they are now."""
    outcome = Outcome(
        conflicts=list(plan.conflicts),
        failures=[holds(step, HELD) or "" for step in plan.steps if step.action == "held"],
        changed=[step.kind for step in plan.applies],
        updated=any(step.action == "update" for step in plan.applies),
        deployment=snapshot.deployment,
        pods=list(snapshot.pods),
    )
    outcome.not_in_place.update(step.kind for step in plan.steps if step.action in ("in the way", "held"))
    hpas = (f.live for f in snapshot.children if f.manifest["kind"] == "HorizontalPodAutoscaler")
    outcome.hpa = next(hpas, None)
    return outcome
