"""Carry out a Plan: every write of one reconcile, the store updated from each answer, the metrics
counted, the Events recorded; what it gave is an :class:`~chute_operator.report.Outcome`."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from chute_operator.kube import (
    OPTIONAL_KINDS,
    ApiFailure,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    KubeApi,
    NotFound,
    Unanswered,
    error_message,
)
from chute_operator.metrics import OperatorMetrics
from chute_operator.plan import HANDOFF_SUFFIX, Event, Manifest, Plan, Snapshot, Step, applied_event, holds
from chute_operator.report import Outcome, status_events, warnings
from chute_operator.status import status_changed
from chute_operator.store import Store, key_of
from chute_operator.weights import field_manager, leave_patch, owners
from chute_operator.zero import ZERO_MANAGER_SUFFIX, Action
from chute_shared.cluster import ACTIVATOR_PORT_STATUS

log = logging.getLogger(__name__)

PERMANENT_FAILURES = (BadRequest, Invalid)
"""Apply errors that retrying cannot fix: reported (Degraded), not retried."""
REPORTED_FAILURES = (*PERMANENT_FAILURES, Forbidden, NotFound)
"""Apply errors a person must act on (a quota, an admission policy, RBAC, a missing API): reported
(Degraded) and retried with backoff. Any other error is only retried."""


class _InTheWay(Exception):
    """An object of a child's name exists and this Chute does not own it."""


class Actor:
    """Writes what a plan says, in its order; checks leadership before each write."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        metrics: OperatorMetrics,
        refresh_served: Callable[[str], Awaitable[bool]],
        check_leader: Callable[[], None],
    ) -> None:
        self.api, self.store, self.metrics = api, store, metrics
        self.refresh_served = refresh_served
        """Ask again whether an optional kind's API is served (kube.OPTIONAL_KINDS)."""
        self.check_leader = check_leader

    async def act(self, snapshot: Snapshot, plan: Plan, outcome: Outcome | None = None) -> Outcome:
        """Apply, prune, then (only if applying went cleanly) sleep or wake and place the activator;
        the outcome ends with the Deployment, HPA and pods as the store then holds them. ``outcome``:
        the one to fill, which keeps what was done should a write raise (NotLeader, a prune)."""
        outcome = Outcome() if outcome is None else outcome
        await self._join_weights(snapshot, plan, outcome)
        await self._apply(snapshot, plan, outcome)
        await self._prune(snapshot, plan)
        await self._leave_weights(snapshot, plan)
        await self._restart_weights(snapshot, plan)
        if outcome.clean:
            await self._scale_to_zero(snapshot, plan)
        outcome.deployment = self.store.get("Deployment", snapshot.key)
        outcome.hpa = self.store.get("HorizontalPodAutoscaler", snapshot.key)
        outcome.pods = self.store.children("Pod", snapshot.key)
        return outcome

    async def _apply(self, snapshot: Snapshot, plan: Plan, outcome: Outcome) -> None:
        """Apply every child that drifted, in order; one that fails stops none of the others, except
        that the Deployment waits for its NetworkPolicy."""
        for step in plan.steps:
            kind, label = step.kind, step.label
            held = holds(step, outcome.not_in_place)
            if held:
                outcome.not_in_place.add(kind)
                outcome.failures.append(held)
                continue
            try:
                applied = await self._apply_one(step, outcome)
            except _InTheWay:
                outcome.conflicts.append(label)
                outcome.not_in_place.add(kind)
                continue
            except NotFound as error:
                if kind in OPTIONAL_KINDS and not await self.refresh_served(kind):
                    outcome.unserved.add(kind)  # the CRD went away: a condition says so
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
                outcome.changed.append(kind)
                outcome.updated = outcome.updated or step.action == "update"
        if outcome.changed:
            log.info("applied %s for %s/%s", ", ".join(outcome.changed), *snapshot.key)
        event = applied_event(snapshot, outcome.changed, outcome.updated)
        if event:
            await self.event(snapshot.chute, event)

    async def _apply_one(self, step: Step, outcome: Outcome) -> bool:
        """Apply one child if it drifted (whether it was written). Raises what looking it up raised,
        and _InTheWay for an object of its name that the Chute does not own (never written to)."""
        if step.found.error is not None:
            raise step.found.error
        if step.action == "in the way":
            raise _InTheWay(step.label)
        if step.action not in ("create", "update"):
            return False
        self.check_leader()
        if step.handover is not None:
            await self.api.apply(step.handover, field_manager=self.api.field_manager + HANDOFF_SUFFIX)
            self.metrics.writes.labels("apply", "Deployment").inc()
        stored = await self.api.apply(step.found.manifest)
        self.metrics.writes.labels("apply", step.kind).inc()
        self.store.put(step.kind, stored)
        if step.kind == "Deployment":
            outcome.deployment_applied_at = time.monotonic()
        return True

    async def _join_weights(self, snapshot: Snapshot, plan: Plan, outcome: Outcome) -> None:
        """Apply the weights cache's objects this Chute is not an owner of yet, with its own field
        manager; an object of the cache's name that is not the cache's is in the way."""
        if snapshot.weights is not None:
            outcome.conflicts.extend(snapshot.weights.in_the_way)
        uid = snapshot.uid or ""
        for manifest in plan.weights_join:
            label = f"{manifest['kind']} {manifest['metadata']['name']}"
            try:
                self.check_leader()
                stored = await self.api.apply(manifest, field_manager=field_manager(uid))
            except PERMANENT_FAILURES as error:
                self._failed(outcome, label, error, retry=False)
                continue
            except (ApiFailure, Unanswered, TimeoutError, OSError) as error:
                self._failed(outcome, label, error, retry=True)
                continue
            self.metrics.writes.labels("apply", manifest["kind"]).inc()
            self.store.put(manifest["kind"], stored)
            log.info("%s/%s: owns a share of %s", *snapshot.key, label)

    async def _leave_weights(self, snapshot: Snapshot, plan: Plan) -> None:
        """Remove this Chute's owner reference from the caches it no longer uses; delete an object left
        without owners (only if unchanged since: a Chute that joined meanwhile keeps it)."""
        namespace, uid = snapshot.key[0], snapshot.uid or ""
        for kind, name in plan.weights_leave:
            self.check_leader()
            try:
                left = await self.api.patch_strategic(kind, namespace, name, leave_patch(uid))
            except NotFound:
                self.store.remove(kind, (namespace, name))
                continue
            self.metrics.writes.labels("patch", kind).inc()
            self.store.put(kind, left)
            if owners(left):
                continue
            try:
                version = str(left["metadata"]["resourceVersion"])
                await self.api.delete_if_unchanged(kind, namespace, name, version)
            except Conflict:
                continue  # changed since: the next reconcile of its owners decides
            self.metrics.writes.labels("delete", kind).inc()
            self.store.remove(kind, (namespace, name))
            log.info("deleted %s %s/%s: no Chute uses this weights cache", kind, namespace, name)

    async def _restart_weights(self, snapshot: Snapshot, plan: Plan) -> None:
        """Delete the cache's download Job (only if unchanged since: another Chute of the cache may
        have done it), so that the next reconcile makes it again and the download starts over."""
        again = plan.weights_restart
        if again is None:
            return
        namespace = snapshot.key[0]
        self.check_leader()
        try:
            await self.api.delete_if_unchanged("Job", namespace, again.name, again.version)
        except Conflict:
            return  # changed since: the next reconcile decides
        self.metrics.writes.labels("delete", "Job").inc()
        self.store.remove("Job", (namespace, again.name))
        log.info("%s/%s: downloading again (deleted Job %s: %s)", *snapshot.key, again.name, again.why)

    def _failed(self, outcome: Outcome, label: str, error: BaseException, retry: bool) -> None:
        outcome.not_in_place.add(label.split(" ", 1)[0])
        if isinstance(error, REPORTED_FAILURES):
            outcome.failures.append(f"applying {label}: {error_message(error)}")
        else:
            log.warning("applying %s: %s", label, error_message(error))
        if retry and outcome.retry is None:
            outcome.retry = error

    async def _prune(self, snapshot: Snapshot, plan: Plan) -> None:
        namespace = snapshot.key[0]
        for prune in plan.prune:
            self.check_leader()
            await self.api.delete(prune.kind, namespace, prune.name)
            self.metrics.writes.labels("delete", prune.kind).inc()
            self.store.remove(prune.kind, (namespace, prune.name))
            log.info("deleted %s %s/%s: no longer in the spec", prune.kind, namespace, prune.name)
            await self.event(snapshot.chute, prune.event)

    async def _scale_to_zero(self, snapshot: Snapshot, plan: Plan) -> None:
        """Sleep or wake, then the activator's EndpointSlice in or out of the Service's path."""
        key = snapshot.key
        if plan.zero is not None:
            self.check_leader()
            stored = await self.api.apply(
                plan.zero.manifest, field_manager=self.api.field_manager + ZERO_MANAGER_SUFFIX
            )
            self.metrics.writes.labels("apply", "Deployment").inc()
            self.store.put("Deployment", stored)
            verb = "scaled to zero" if plan.zero.action is Action.SLEEP else "waking"
            log.info("%s/%s %s: %s", *key, verb, plan.zero.event.message)
            await self.event(snapshot.chute, plan.zero.event)
        if plan.slice_apply is not None:
            await self._record_port(snapshot, plan.slice_apply)
            self.check_leader()
            self.store.put("EndpointSlice", await self.api.apply(plan.slice_apply))
            self.metrics.writes.labels("apply", "EndpointSlice").inc()
            log.info("%s/%s: Service reaches the activator", *key)
        elif plan.slice_delete is not None:
            self.check_leader()
            await self.api.delete("EndpointSlice", *plan.slice_delete)
            self.metrics.writes.labels("delete", "EndpointSlice").inc()
            self.store.remove("EndpointSlice", plan.slice_delete)
            log.info("%s/%s: replicas ready, the activator is out of the data path", *key)

    async def _record_port(self, snapshot: Snapshot, piece: Manifest) -> None:
        """Write the slice's activator port in the Chute's status first, unless it is there: the
        activator learns which Chute a port is from that status, and must know it before kube-proxy
        sends the Service's connections to the port."""
        port = piece["ports"][0]["port"]
        chute = self.store.get("Chute", snapshot.key) or snapshot.chute
        if (chute.get("status") or {}).get(ACTIVATOR_PORT_STATUS) == port:
            return
        self.check_leader()
        stored = await self.api.patch_status(*snapshot.key, {ACTIVATOR_PORT_STATUS: port})
        self.metrics.writes.labels("patch", "Chute/status").inc()
        if stored.get("metadata"):
            self.store.put("Chute", stored)

    async def report(self, chute: Manifest, outcome: Outcome) -> None:
        """A Warning per conflict or failure the status does not already show."""
        for event in warnings(chute, outcome):
            await self.event(chute, event)

    async def write_status(self, chute: Manifest, status: dict[str, Any]) -> None:
        """Patch the Chute's status if it changed, then record the transitions that are news."""
        previous = chute.get("status") or {}
        if not status_changed(previous, status):
            return
        self.check_leader()
        namespace, name = key_of(chute)
        stored = await self.api.patch_status(namespace, name, status)
        self.metrics.writes.labels("patch", "Chute/status").inc()
        if stored.get("metadata"):
            self.store.put("Chute", stored)
        for event in status_events(previous, status):
            await self.event(chute, event)

    async def event(self, chute: Manifest, event: Event) -> None:
        try:
            await self.api.event(chute, event.type, event.reason, event.message)
            self.metrics.writes.labels("create", "Event").inc()
        except Exception as error:  # an event is never worth failing a reconcile for
            log.warning("event %s not recorded: %s", event.reason, error_message(error))
