"""Reconcile one Chute: apply what drifted, prune what is no longer wanted, write status if it changed.

Level-based: reads the watched state from the Store, never from the event that woke it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from chute_operator.api import reasons
from chute_operator.conditions import find
from chute_operator.drift import drifted
from chute_operator.gpus import NoEligibleGpu
from chute_operator.kube import (
    ApiFailure,
    BadRequest,
    Forbidden,
    Invalid,
    KubeApi,
    NotFound,
    Unanswered,
    error_message,
)
from chute_operator.metrics import OperatorMetrics
from chute_operator.render import DesiredManifests
from chute_operator.rollout import observe
from chute_operator.settled import SettledTemplates
from chute_operator.status import Observation, compute_status, status_changed
from chute_operator.store import Key, Store, key_of
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.workload import RenderOptions, Workload, resolve
from chute_operator.zero import (
    ACTIVATOR_SLICE_SUFFIX,
    ZERO_MANAGER_SUFFIX,
    Action,
    Activator,
    activator_slice,
    decide,
    sleep_manifest,
    wake_manifest,
    wake_requested_at,
    wants_activator,
)
from chute_shared.cluster import CHUTE_LABEL

log = logging.getLogger(__name__)

PRUNABLE = ("HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy")
PERMANENT_FAILURES = (BadRequest, Invalid)
"""Apply errors that retrying cannot fix: reported (Degraded), not retried."""
REPORTED_FAILURES = (*PERMANENT_FAILURES, Forbidden, NotFound)
"""Apply errors a person must act on (a quota, an admission policy, RBAC, a missing API): reported
(Degraded) and retried with backoff. Any other error is only retried."""
QUIET_REASONS = reasons.PROGRESS_REASONS | {
    reasons.MONITORING_UNAVAILABLE,
    reasons.AUTOSCALER_PENDING,
    reasons.SCALING_DISABLED,
}
"""Reasons announced as Normal events, not Warnings."""


class NotLeader(Exception):
    """Leadership was lost mid-reconcile: stop writing at once."""


class RetryLater(Exception):
    """The reconcile did what it could and reported it; something must be tried again later."""


@dataclass
class Outcome:
    """What one pass over a Chute's children found."""

    conflicts: list[str] = field(default_factory=list)
    """Objects (``Kind name``) in the way that this Chute does not own: left untouched."""
    failures: list[str] = field(default_factory=list)
    """Reported apply errors, one per child."""
    retry: BaseException | None = None
    """The first error that is worth trying again."""
    unserved: bool = False
    """The ServiceMonitor API went away while applying."""
    not_in_place: set[str] = field(default_factory=set)
    """Kinds that could not be applied."""


Applied = Literal["created", "updated"]


@dataclass
class MonitoringProbe:
    """Whether the ServiceMonitor API exists: asked once, then re-checked by the controller."""

    api: KubeApi
    available: bool | None = None

    async def refresh(self) -> bool:
        self.available = await self.api.service_monitors_served()
        return self.available

    async def served(self) -> bool:
        if self.available is None:
            return await self.refresh()
        return self.available


def owns_replicas(deployment: dict[str, Any] | None, manager: str) -> bool:
    """Whether ``manager`` applied ``spec.replicas`` of this Deployment."""
    for entry in (deployment or {}).get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            return "f:replicas" in (fields.get("f:spec") or {})
    return False


def _owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    """Whether the Chute with this uid is the object's controller (owner reference by uid)."""
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


class Reconciler:
    """Brings one Chute's children and status in line with its spec."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        options: RenderOptions,
        metrics: OperatorMetrics,
        may_write: Callable[[], bool],
    ) -> None:
        self.api, self.store, self.options, self.metrics = api, store, options, metrics
        self.may_write = may_write
        self.monitoring = MonitoringProbe(api)
        self.settled_templates = SettledTemplates()
        self.desired = DesiredManifests()
        self.idle_seconds: Callable[[str, str], float | None] = lambda namespace, pod: None
        """How long a pod's sidecar has served nothing (the metrics API's readings); None: unknown."""
        self.activator: Activator | None = None
        """The activator's ready pods (scale to zero is off while there are none)."""
        self.status_wait_seconds = 0.0
        """How long a status waits for the controller of a Deployment just applied (Settings)."""
        self._deployment_applied: dict[Key, float] = {}
        """When this reconciler last applied each Chute's Deployment (monotonic seconds)."""

    def _check_leader(self) -> None:
        if not self.may_write():
            raise NotLeader

    async def reconcile(self, key: Key) -> float | None:
        """Reconcile the Chute at ``key``; seconds after which to reconcile it again, if it must be."""
        chute = self.store.get("Chute", key)
        if chute is None or chute["metadata"].get("deletionTimestamp"):
            gone = self.store.get("Deployment", key)
            if gone:
                self.settled_templates.forget(str(gone["metadata"].get("uid", "")))
            self.desired.forget(key)
            self._deployment_applied.pop(key, None)
            return None  # children go by garbage collection
        self._check_leader()
        uid = chute["metadata"].get("uid")
        workload: Workload | None = None
        invalid: str | None = None
        live = self.store.get("Deployment", key)
        rollout = observe(live if live and _owned_by(live, uid) else None, self.store.children("Pod", key))
        try:
            workload = resolve(parse_chute(chute), self.options, rollout)
        except (InvalidChute, NoEligibleGpu) as error:
            invalid = "; ".join(str(error).splitlines())
        outcome = Outcome()
        unserved = False
        if workload is not None:
            desired = self.desired.of(key, workload)
            served = await self._without_unserved(chute, desired)
            outcome = await self._apply(chute, uid, served)
            unserved = len(served) < len(desired) or outcome.unserved
            await self._prune(chute, key, uid, served)
        if not outcome.failures and not outcome.conflicts and outcome.retry is None:
            await self._scale_to_zero(chute, key, uid, workload)
        deployment = self.store.get("Deployment", key)
        hpa = self.store.get("HorizontalPodAutoscaler", key)
        owned = deployment if deployment and _owned_by(deployment, uid) else None
        observation = Observation(
            generation=chute["metadata"].get("generation"),
            selector=f"{CHUTE_LABEL}={key[1]}",
            workload=workload,
            invalid_spec=invalid,
            apply_error="; ".join(outcome.failures) or None,
            child_conflict=_conflict_message(outcome.conflicts),
            deployment=owned,
            pods=self.store.children("Pod", key),
            previous=chute.get("status") or {},
            monitoring_unavailable=unserved,
            hpa=hpa if hpa and _owned_by(hpa, uid) else None,
            rollout=rollout,
            template_settled=owned is not None and self.settled_templates.settled(owned),
        )
        await self._report(chute, outcome)
        wait = self._status_wait(key, owned, outcome)
        if wait is not None:
            return wait
        await self._write_status(chute, compute_status(observation, datetime.now(UTC)))
        if outcome.retry is not None:
            raise RetryLater(error_message(outcome.retry)) from outcome.retry
        if outcome.conflicts:  # the object in the way is not watched: look again later
            raise RetryLater(_conflict_message(outcome.conflicts))
        return None

    def _status_wait(self, key: Key, deployment: dict[str, Any] | None, outcome: Outcome) -> float | None:
        """Seconds the status write waits for the controller of the Deployment just applied; None:
        write it now.

        Until the Deployment's controller observes the new generation, its status tells of the
        Deployment as it was: a status written now would say so, and the one written when the
        controller answers (its status change wakes the Chute) would follow at once. At 1000 new
        Chutes, status patches on the way to Ready fell from 2.8 to 1.4-1.5 per Chute
        (docs/benchmarks/operator.md). Anything to report (a failure, a conflict) is written at
        once; the wait is bounded by status_wait_seconds.
        """
        applied = self._deployment_applied.get(key)
        if applied is None:
            return None
        left = self.status_wait_seconds - (time.monotonic() - applied)
        observed = ((deployment or {}).get("status") or {}).get("observedGeneration") or 0
        generation = ((deployment or {}).get("metadata") or {}).get("generation") or 0
        clean = not (outcome.failures or outcome.conflicts or outcome.retry)
        if deployment is None or observed >= generation or left <= 0 or not clean:
            del self._deployment_applied[key]
            return None
        return left

    async def _scale_to_zero(
        self, chute: dict[str, Any], key: Key, uid: str | None, workload: Workload | None
    ) -> None:
        """Idle for shutdownAfterSeconds -> replicas 0; a wake request -> back to the HPA; and the
        activator's EndpointSlice while nothing serves (zero.py has the rules)."""
        deployment = self.store.get("Deployment", key)
        pods = self.store.children("Pod", key)
        action = decide(workload, chute, deployment, pods, self.idle_seconds, self.activator)
        if action is not Action.STAY and deployment is not None:
            self._check_leader()
            now = datetime.now(UTC)
            manifest = (
                sleep_manifest(deployment, now) if action is Action.SLEEP else wake_manifest(deployment)
            )
            stored = await self.api.apply(
                manifest, field_manager=self.api.field_manager + ZERO_MANAGER_SUFFIX
            )
            self.metrics.writes.labels("apply", "Deployment").inc()
            self.store.put("Deployment", stored)
            deployment = stored
            if action is Action.SLEEP:
                seconds = workload.shutdown_after_seconds if workload else 0
                log.info("scaled %s/%s to zero: idle for %ss", *key, seconds)
                message = f"every replica idle for {seconds}s: scaled to zero; the next request wakes it"
                await self._event(chute, "Normal", reasons.SCALED_TO_ZERO, message)
            else:
                asked = wake_requested_at(chute)
                why = (
                    f"a request is waiting (asked at {asked:%H:%M:%S})" if asked else "minInstances is not 0"
                )
                log.info("waking %s/%s: %s", *key, why)
                await self._event(chute, "Normal", reasons.WAKING, f"{why}: scaling to 1 replica")
        slice_key = (key[0], key[1] + ACTIVATOR_SLICE_SUFFIX)
        actual = self.store.get("EndpointSlice", slice_key)
        no_activator = not (self.activator and self.activator.addresses)
        if workload is not None and not no_activator and wants_activator(workload, deployment, pods):
            assert self.activator is not None
            desired = activator_slice(workload, self.activator)
            if drifted(desired, actual):
                self._check_leader()
                self.store.put("EndpointSlice", await self.api.apply(desired))
                self.metrics.writes.labels("apply", "EndpointSlice").inc()
                log.info("%s/%s: Service reaches the activator", *key)
            return
        if actual is not None and _owned_by(actual, uid):
            self._check_leader()
            await self.api.delete("EndpointSlice", *slice_key)
            self.metrics.writes.labels("delete", "EndpointSlice").inc()
            self.store.remove("EndpointSlice", slice_key)
            log.info("%s/%s: replicas ready, the activator is out of the data path", *key)

    async def _without_unserved(
        self, chute: dict[str, Any], desired: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Drop the ServiceMonitor where its API does not exist (the Monitored condition says so)."""
        if not any(m["kind"] == "ServiceMonitor" for m in desired):
            return desired
        if await self.monitoring.served():
            return desired
        return [m for m in desired if m["kind"] != "ServiceMonitor"]

    async def _apply(self, chute: dict[str, Any], uid: str | None, desired: list[dict[str, Any]]) -> Outcome:
        """Apply every child that drifted, in order; one that fails stops none of the others, except
        that the Deployment waits for its NetworkPolicy (a model never runs unprotected)."""
        outcome = Outcome()
        changed: list[str] = []
        updated = False
        for manifest in desired:
            kind, key = manifest["kind"], key_of(manifest)
            label = f"{kind} {key[1]}"
            if kind == "Deployment" and "NetworkPolicy" in outcome.not_in_place:
                outcome.not_in_place.add(kind)
                outcome.failures.append(f"{label} not applied until its NetworkPolicy is in place")
                continue
            try:
                applied = await self._apply_one(manifest, uid)
            except NotLeader:
                raise
            except _InTheWay:
                outcome.conflicts.append(label)
                outcome.not_in_place.add(kind)
                continue
            except NotFound as error:
                if kind == "ServiceMonitor" and not await self.monitoring.refresh():
                    outcome.unserved = True  # the CRD went away: the Monitored condition says so
                    continue
                self._failed(outcome, label, error, retry=True)
                continue
            except PERMANENT_FAILURES as error:
                self._failed(outcome, label, error, retry=False)
                continue
            except (ApiFailure, Unanswered, TimeoutError, OSError) as error:
                self._failed(outcome, label, error, retry=True)
                continue
            if applied:
                changed.append(kind)
            updated = updated or applied == "updated"
        if changed:
            log.info("applied %s for %s/%s", ", ".join(changed), *key_of(chute))
        first = not (chute.get("status") or {}).get("observedGeneration") and len(changed) == len(desired)
        if changed and (updated or not first):
            # A new Chute's children all created at once are not news: its Ready event follows (or
            # a Warning saying why not). What changes a Chute that exists is (issue 14: Events were
            # the largest share of the operator's writes).
            await self._event(chute, "Normal", reasons.APPLIED, f"applied {', '.join(changed)}")
        return outcome

    def _failed(self, outcome: Outcome, label: str, error: BaseException, retry: bool) -> None:
        outcome.not_in_place.add(label.split(" ", 1)[0])
        if isinstance(error, REPORTED_FAILURES):
            outcome.failures.append(f"applying {label}: {error_message(error)}")
        else:
            log.warning("applying %s: %s", label, error_message(error))
        if retry and outcome.retry is None:
            outcome.retry = error

    async def _apply_one(self, manifest: dict[str, Any], uid: str | None) -> Applied | None:
        """Apply one child if it drifted; whether it was created or updated (None: no write). Raises
        _InTheWay for an object of that name that this Chute does not own (it is never written to)."""
        kind, key = manifest["kind"], key_of(manifest)
        actual = await self._ours_or_none(kind, key, uid)
        if not drifted(manifest, actual) and not self._releases_replicas(manifest, actual):
            return None
        self._check_leader()
        await self._hand_over_replicas(manifest, actual)
        stored = await self.api.apply(manifest)
        self.metrics.writes.labels("apply", kind).inc()
        self.store.put(kind, stored)
        if kind == "Deployment":
            self._deployment_applied[key] = time.monotonic()
        return "created" if actual is None else "updated"

    async def _ours_or_none(self, kind: str, key: Key, uid: str | None) -> dict[str, Any] | None:
        """The live child if this Chute owns it, None if nothing has its name.

        The store only sees objects labelled as the operator's, so one it lacks is looked up (a read,
        only until the child exists): a Service someone created by hand is in the way, not missing.
        """
        known = self.store.get(kind, key)
        if known is not None and _owned_by(known, uid):
            return known
        live = await self.api.get(kind, *key)
        if live is None:
            return None
        if not _owned_by(live, uid):
            raise _InTheWay(kind, key[1])
        self.store.put(kind, live)
        return live

    def _releases_replicas(self, manifest: dict[str, Any], actual: dict[str, Any] | None) -> bool:
        """A Deployment whose replicas we own but now leave to an HPA: applying it is due."""
        return (
            manifest["kind"] == "Deployment"
            and "replicas" not in manifest["spec"]
            and owns_replicas(actual, self.api.field_manager)
        )

    async def _hand_over_replicas(self, manifest: dict[str, Any], actual: dict[str, Any] | None) -> None:
        """Before leaving ``spec.replicas`` to an HPA, let a second manager hold its current value.

        Dropping a field we solely own from an apply removes it, and the Deployment would fall back
        to one replica until the HPA reacts. Co-owned, the value stays; the HPA's next scale takes it.
        """
        if actual is None or not self._releases_replicas(manifest, actual):
            return
        handoff = {
            "apiVersion": manifest["apiVersion"],
            "kind": "Deployment",
            "metadata": {
                "name": manifest["metadata"]["name"],
                "namespace": manifest["metadata"]["namespace"],
            },
            "spec": {"replicas": actual["spec"].get("replicas", 1)},
        }
        await self.api.apply(handoff, field_manager=f"{self.api.field_manager}-handoff")
        self.metrics.writes.labels("apply", "Deployment").inc()

    async def _report(self, chute: dict[str, Any], outcome: Outcome) -> None:
        """One Warning event per conflict or failure that the current status does not already show."""
        shown = {
            c.get("type"): c.get("message") or "" for c in (chute.get("status") or {}).get("conditions") or []
        }
        for label in outcome.conflicts:
            if label not in shown.get("Degraded", ""):
                await self._event(chute, "Warning", reasons.CHILD_CONFLICT, _conflict_message([label]) or "")
        for failure in outcome.failures:
            if failure not in shown.get("Degraded", ""):
                await self._event(chute, "Warning", reasons.APPLY_FAILED, failure)

    async def _prune(
        self, chute: dict[str, Any], key: Key, uid: str | None, desired: list[dict[str, Any]]
    ) -> None:
        wanted = {(m["kind"], m["metadata"]["name"]) for m in desired}
        for kind in PRUNABLE:
            for child in self.store.children(kind, key):
                name = child["metadata"]["name"]
                if (kind, name) in wanted or not _owned_by(child, uid):
                    continue
                self._check_leader()
                await self.api.delete(kind, key[0], name)
                self.metrics.writes.labels("delete", kind).inc()
                self.store.remove(kind, (key[0], name))
                log.info("deleted %s %s/%s: no longer in the spec", kind, key[0], name)
                await self._event(
                    chute, "Normal", reasons.PRUNED, f"deleted {kind} {name}: no longer in the spec"
                )

    async def _write_status(self, chute: dict[str, Any], status: dict[str, Any]) -> None:
        previous = chute.get("status") or {}
        if not status_changed(previous, status):
            return
        self._check_leader()
        namespace, name = key_of(chute)
        stored = await self.api.patch_status(namespace, name, status)
        self.metrics.writes.labels("patch", "Chute/status").inc()
        if stored.get("metadata"):
            self.store.put("Chute", stored)
        for kind in (reasons.READY, reasons.MONITORED, reasons.AUTOSCALING):
            before = find(previous.get("conditions") or [], kind) or {}
            after = find(status["conditions"], kind)
            if after is None or (before.get("status"), before.get("reason")) == (
                after["status"],
                after["reason"],
            ):
                continue
            if kind == reasons.MONITORED and after["status"] == "True" and not before:
                continue  # monitoring working from the start is not news
            if kind == reasons.AUTOSCALING and not before and after["status"] != "False":
                continue  # nor is an autoscaler that starts pending or working
            if (
                kind == reasons.AUTOSCALING
                and before.get("reason") == reasons.AUTOSCALER_PENDING
                and after["reason"] == reasons.SCALING_ACTIVE
            ):
                continue  # nor one that, once a replica is ready, starts working as it should
            if kind == reasons.READY and after["reason"] in (reasons.CHILD_CONFLICT, reasons.APPLY_FAILED):
                continue  # each conflict and failure has its own event (_report)
            if (
                kind == reasons.READY
                and after["status"] != "True"
                and after["reason"] in reasons.PROGRESS_REASONS
            ):
                continue  # on its way up (Creating, RollingOut, ModelLoading...): the status shows each
                # step; the Ready event says it arrived
            quiet = after["status"] == "True" or after["reason"] in QUIET_REASONS
            reason = kind if after["status"] == "True" else after["reason"]
            await self._event(chute, "Normal" if quiet else "Warning", reason, after["message"] or reason)

    async def _event(self, chute: dict[str, Any], kind: str, reason: str, message: str) -> None:
        try:
            await self.api.event(chute, kind, reason, message)
            self.metrics.writes.labels("create", "Event").inc()
        except Exception as error:  # an event is never worth failing a reconcile for
            log.warning("event %s not recorded: %s", reason, error_message(error))


class _InTheWay(Exception):
    """An object of a child's name exists and this Chute does not own it."""


def _conflict_message(labels: list[str]) -> str | None:
    if not labels:
        return None
    objects = ", ".join(labels)
    verb = "exists" if len(labels) == 1 else "exist"
    return (
        f"{objects} {verb} and {'is' if len(labels) == 1 else 'are'} not owned by this Chute: left untouched "
        "(delete or rename it, or give the Chute another name)"
    )
