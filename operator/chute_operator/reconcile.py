"""Reconcile one Chute: observe, plan, act, then write its status if it changed.

Level-based: reads the watched state from the Store, never from the event that woke it.

- observe (``observe.py``): one read of the Chute, its children, pods, the activator and the idle
  readings into a Snapshot (and a GET for a desired child the store lacks);
- plan (``plan.py``, pure): what to apply, prune, sleep or wake, and the activator's EndpointSlice;
- act (``act.py``): the writes, in the plan's order, each answer stored;
- status (``report.py`` and ``status.py``, pure): from the snapshot, the plan and what acting gave.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chute_operator.act import Actor
from chute_operator.activator_ports import ActivatorPorts
from chute_operator.autoscaler import metric_grace_left
from chute_operator.kube import KubeApi, error_message
from chute_operator.metrics import OperatorMetrics
from chute_operator.observe import ConfirmIdle, IdleReadings, Observer, no_confirmation, no_readings
from chute_operator.plan import make_plan
from chute_operator.render import DesiredManifests
from chute_operator.report import Outcome, conflict_message, observation, owned_deployment, status_wait
from chute_operator.settled import SettledTemplates
from chute_operator.sidecars import SidecarPolicy, SidecarUpdates
from chute_operator.status import compute_status
from chute_operator.store import Key, Store
from chute_operator.weights import POLL_SECONDS
from chute_operator.workload import RenderOptions
from chute_operator.zero import ABSENT, ActivatorReading


class NotLeader(Exception):
    """Leadership was lost mid-reconcile: stop writing at once."""


class RetryLater(Exception):
    """The reconcile did what it could and reported it; something must be tried again later.
    ``again``: when the Chute must be looked at again at the latest, whatever the retry's backoff
    (a metric failure's grace ends then)."""

    def __init__(self, message: str | None, again: float | None = None) -> None:
        super().__init__(message)
        self.again = again


@dataclass
class ApiProbe:
    """Whether the API of each optional kind (kube.OPTIONAL_KINDS: ServiceMonitor, the kinds of
    ``spec.expose``) exists: asked when a Chute first wants one, then re-checked by the controller
    while it is missing."""

    api: KubeApi
    available: dict[str, bool] = field(default_factory=dict)

    async def refresh(self, kind: str) -> bool:
        self.available[kind] = await self.api.kind_served(kind)
        return self.available[kind]

    async def served(self, kind: str) -> bool:
        known = self.available.get(kind)
        return await self.refresh(kind) if known is None else known

    def missing(self) -> tuple[str, ...]:
        """The kinds last found not served."""
        return tuple(kind for kind, served in self.available.items() if not served)


def _every(store: Store, kind: str) -> list[dict[str, Any]]:
    return [found for key in store.keys(kind) if (found := store.get(kind, key)) is not None]


def soonest(*waits: float | None) -> float | None:
    """The shortest of the waits given, None when there is none."""
    given = [wait for wait in waits if wait is not None]
    return min(given) if given else None


def no_activator() -> ActivatorReading:
    return ABSENT


class Reconciler:
    """Brings one Chute's children and status in line with its spec."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        options: RenderOptions,
        metrics: OperatorMetrics,
        may_write: Callable[[], bool],
        *,
        status_wait_seconds: float = 0.0,
        activator: Callable[[], ActivatorReading] = no_activator,
        idle_seconds: IdleReadings = no_readings,
        confirm_idle: ConfirmIdle = no_confirmation,
        activator_ports: tuple[int, int] | None = None,
        sidecars: SidecarUpdates | None = None,
    ) -> None:
        """``status_wait_seconds``: how long a status waits for the controller of a Deployment just
        applied (Settings). ``activator``: the activator's ready pods as last read (scale to zero is
        off while there are none). ``idle_seconds``: how long a pod's sidecar has served nothing;
        ``confirm_idle``: the same, read from the sidecar now (before a sleep). ``activator_ports``:
        the activator's range of ports per Chute (None: no activator). ``sidecars``: when running
        Chutes get a new sidecar image (default: only when a Chute's annotation asks, one at a time)."""
        self.api, self.store, self.options, self.metrics = api, store, options, metrics
        self.may_write = may_write
        self.status_wait_seconds = status_wait_seconds
        self.apis = ApiProbe(api)
        self.settled_templates = SettledTemplates()
        self.desired = DesiredManifests()
        self.sidecars = sidecars or SidecarUpdates(SidecarPolicy(options.sidecar_image))
        self.ports = (
            ActivatorPorts(
                activator_ports, lambda: _every(store, "Chute"), lambda: _every(store, "EndpointSlice")
            )
            if activator_ports
            else None
        )
        self.observer = Observer(
            api,
            store,
            options,
            self.desired,
            self.apis.served,
            activator,
            idle_seconds,
            confirm_idle,
            ports=self.ports,
            sidecars=self.sidecars,
        )
        self.actor = Actor(api, store, metrics, self.apis.refresh, self._check_leader)
        self._deployment_applied: dict[Key, float] = {}
        """When this reconciler last applied each Chute's Deployment (monotonic seconds)."""
        self.metric_grace_from: datetime | None = None
        """When this operator's caches synced (set by the controller): an HPA's failed metric read
        from before is given the whole grace from then (autoscaler.metric_grace_left), as this
        operator's metrics API was away while it started."""

    def _check_leader(self) -> None:
        if not self.may_write():
            raise NotLeader

    async def reconcile(self, key: Key) -> float | None:
        """Reconcile the Chute at ``key``; seconds after which to reconcile it again, if it must be."""
        chute = self.store.get("Chute", key)
        if chute is None or chute["metadata"].get("deletionTimestamp"):
            self._forget(key, gone=chute is None)
            return None  # children go by garbage collection
        self._check_leader()
        snapshot = await self.observer.observe(chute)
        plan = make_plan(snapshot, datetime.now(UTC), self.api.field_manager)
        outcome = Outcome()
        try:
            await self.actor.act(snapshot, plan, outcome)
        finally:  # a Deployment applied before a write raised is waited for all the same
            if outcome.deployment_applied_at is not None:
                self._deployment_applied[key] = outcome.deployment_applied_at
        owned = owned_deployment(snapshot, outcome)
        settled = owned is not None and self.settled_templates.settled(owned)
        await self.actor.report(chute, outcome)
        wait = status_wait(
            self._deployment_applied.get(key), time.monotonic(), self.status_wait_seconds, owned, outcome
        )
        if wait is not None:
            return wait
        self._deployment_applied.pop(key, None)
        now = datetime.now(UTC)
        observed = observation(snapshot, plan, outcome, settled)
        status = compute_status(observed, now, self.metric_grace_from)
        await self.actor.write_status(chute, status)
        grace = (  # a metric failure not reported yet: looked at again when its grace ends
            metric_grace_left(observed.hpa, status["conditions"], now, self.metric_grace_from)
            if observed.workload is not None and observed.workload.autoscaled
            else None
        )  # (a retry's backoff grows to minutes: it must not put the report off)
        if outcome.retry is not None:
            raise RetryLater(error_message(outcome.retry), again=grace) from outcome.retry
        if outcome.conflicts:  # the object in the way is not watched: look again later
            raise RetryLater(conflict_message(outcome.conflicts), again=grace)
        if plan.weights_restart is not None or (plan.weights is not None and plan.weights.working):
            return POLL_SECONDS  # the download's progress, and a PVC or pod that no event announces
        return soonest(grace, plan.weights_retry_seconds)  # and a failed download tried again then

    def _forget(self, key: Key, gone: bool = True) -> None:
        """A Chute deleted (``gone``: no longer in the store; else being deleted, its activator port
        kept: its Service and slice may still send there)."""
        deployment = self.store.get("Deployment", key)
        if deployment:
            self.settled_templates.forget(str(deployment["metadata"].get("uid", "")))
        self.desired.forget(key)
        self.sidecars.forget(key)
        self._deployment_applied.pop(key, None)
        if self.ports is not None and gone:
            self.ports.release(key)
