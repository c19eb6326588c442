"""The reconciler against a fake API: what it writes on the way from a new Chute to Ready, and after."""

from __future__ import annotations

import contextlib
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chute_operator.gpus import builtin_catalog
from chute_operator.kube import Forbidden, Invalid
from chute_operator.metrics import OperatorMetrics
from chute_operator.reconcile import NotLeader, Reconciler, RetryLater
from chute_operator.store import Store
from chute_operator.workload import RenderOptions
from chute_operator.zero import Activator
from tests.chutes import cpu_chute

KEY = ("ns", "a")


class FakeApi:
    """Records writes; an applied object is stored as sent, with a uid and a resourceVersion."""

    field_manager = "chute-operator"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.version = 100
        self.writes: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []

    def _next(self) -> str:
        self.version += 1
        return str(self.version)

    async def apply(self, manifest: dict[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        self.writes.append(("apply", manifest["kind"]))
        stored = copy.deepcopy(manifest)
        stored["metadata"].update(uid=f"uid-{manifest['kind']}", resourceVersion=self._next(), generation=1)
        return stored

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("patch", "Chute/status"))
        chute = copy.deepcopy(self.store.get("Chute", (namespace, name)) or {})
        chute["status"] = status
        chute["metadata"]["resourceVersion"] = self._next()
        return chute

    async def event(self, chute: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.writes.append(("create", "Event"))
        self.events.append((kind, reason))

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.writes.append(("delete", kind))

    async def kind_served(self, kind: str) -> bool:
        return False


def _chute() -> dict[str, Any]:
    metadata = {"namespace": "ns", "uid": "u", "generation": 1, "resourceVersion": "1"}
    return cpu_chute("a", metadata, monitoring={"serviceMonitor": False})


def _setup(status_wait_seconds: float = 0.0) -> tuple[Reconciler, FakeApi, Store]:
    store = Store()
    api = FakeApi(store)
    options = RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test")
    reconciler = Reconciler(
        api,  # type: ignore[arg-type]
        store,
        options,
        OperatorMetrics(),
        lambda: True,
        status_wait_seconds=status_wait_seconds,
    )
    store.put("Chute", _chute())
    return reconciler, api, store


def _pod(state: dict[str, Any], ready: bool) -> dict[str, Any]:
    labels = {"chutes.ai/chute": "a", "app.kubernetes.io/managed-by": "chute-operator"}
    return {
        "metadata": {
            "name": "a-1",
            "namespace": "ns",
            "uid": "p",
            "resourceVersion": "500",
            "labels": labels,
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [
                {"name": "model", "started": ready, "ready": ready, "restartCount": 0, "state": state}
            ],
        },
    }


def _rolled_out(store: Store, available: int) -> None:
    deployment = copy.deepcopy(store.get("Deployment", KEY))
    assert deployment is not None
    deployment["metadata"]["resourceVersion"] = str(400 + 10 * available)  # as the API server: a new version
    deployment["status"] = {
        "observedGeneration": 1,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": available,
        "availableReplicas": available,
    }
    store.put("Deployment", deployment)
    hpa = copy.deepcopy(store.get("HorizontalPodAutoscaler", KEY))
    assert hpa is not None
    hpa["metadata"]["resourceVersion"] = str(401 + 10 * available)
    hpa["status"] = {
        "currentReplicas": 1,
        "desiredReplicas": 1,
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "ok"},
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "ok"},
        ],
    }
    store.put("HorizontalPodAutoscaler", hpa)


async def test_a_new_chute_on_its_way_to_ready_records_one_event_ready() -> None:
    """Each step on the way up (RollingOut, ModelLoading, NoReplicasReady) is in the status; as Events
    they were over half of all the operator's writes (4.42 Events per Chute at 200 Chutes). Creating a
    new Chute's children is not an Event either: its Ready event follows."""
    reconciler, api, store = _setup()
    await reconciler.reconcile(KEY)
    assert ("apply", "Deployment") in api.writes
    store.put("Pod", _pod({"running": {}}, ready=False))
    await reconciler.reconcile(KEY)  # the model loads
    _rolled_out(store, available=0)
    await reconciler.reconcile(KEY)  # rolled out, no replica ready yet
    pod = _pod({"running": {}}, ready=True)
    pod["metadata"]["resourceVersion"] = "501"
    store.put("Pod", pod)
    _rolled_out(store, available=1)
    await reconciler.reconcile(KEY)
    ready = [c for c in store.get("Chute", KEY)["status"]["conditions"] if c["type"] == "Ready"]  # type: ignore[index]
    assert (ready[0]["status"], ready[0]["reason"]) == ("True", "Serving")
    assert api.events == [("Normal", "Ready")]

    before = len(api.writes)
    await reconciler.reconcile(KEY)
    assert api.writes[before:] == []  # nothing changed, nothing written
    assert reconciler.desired.renders == 1


async def test_a_spec_change_of_an_existing_chute_is_an_applied_event() -> None:
    reconciler, api, store = _setup()
    await reconciler.reconcile(KEY)
    assert api.events == []
    chute = store.get("Chute", KEY)
    assert chute is not None
    changed = copy.deepcopy(chute)
    changed["metadata"].update(generation=2, resourceVersion="900")
    changed["spec"]["maxInstances"] = changed["spec"].get("maxInstances", 1) + 2
    store.put("Chute", changed)
    await reconciler.reconcile(KEY)
    assert ("Normal", "Applied") in api.events


async def test_children_of_an_existing_chute_created_again_are_an_applied_event() -> None:
    """Only a new Chute's first children go unannounced: an existing Chute whose children were all
    deleted (by hand, say) and are created again gets its Applied event."""
    reconciler, api, store = _setup()
    await reconciler.reconcile(KEY)
    assert api.events == []
    for kind in ("NetworkPolicy", "Service", "Deployment", "HorizontalPodAutoscaler"):
        store.remove(kind, KEY)
    await reconciler.reconcile(KEY)
    assert ("Normal", "Applied") in api.events


async def test_a_failing_pod_is_still_a_warning_event() -> None:
    reconciler, api, store = _setup()
    await reconciler.reconcile(KEY)
    crashing = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    store.put("Pod", _pod(crashing, ready=False))
    await reconciler.reconcile(KEY)
    assert ("Warning", "CrashLoopBackOff") in api.events


async def test_a_status_waits_for_the_controller_of_the_deployment_just_applied() -> None:
    """The first status of a new Chute would describe a Deployment its controller has not seen yet,
    and be written again as soon as the controller answers: it waits for that answer instead."""
    reconciler, api, store = _setup(status_wait_seconds=5.0)
    wait = await reconciler.reconcile(KEY)
    assert ("apply", "Deployment") in api.writes
    assert ("patch", "Chute/status") not in api.writes
    assert wait is not None
    assert 0 < wait <= 5.0  # reconcile again by then, whatever happens
    assert await reconciler.reconcile(KEY) is not None  # still unobserved (a Service's event woke it)
    assert ("patch", "Chute/status") not in api.writes
    _rolled_out(store, available=0)  # the Deployment's controller observed generation 1
    assert await reconciler.reconcile(KEY) is None
    assert api.writes.count(("patch", "Chute/status")) == 1
    assert store.get("Chute", KEY)["status"]["observedGeneration"] == 1  # type: ignore[index]


async def test_a_status_waits_no_longer_than_its_bound() -> None:
    reconciler, api, _ = _setup(status_wait_seconds=5.0)
    assert await reconciler.reconcile(KEY) is not None
    reconciler.status_wait_seconds = 0.0  # as if the 5 s had passed: the controller never answered
    assert await reconciler.reconcile(KEY) is None
    assert api.writes.count(("patch", "Chute/status")) == 1
    reconciler.status_wait_seconds = 5.0
    assert await reconciler.reconcile(KEY) is None  # nothing applied since: nothing to wait for
    assert api.writes.count(("patch", "Chute/status")) == 1


async def test_a_deployment_applied_by_a_reconcile_that_stopped_still_holds_its_status_back() -> None:
    """Leadership lost (or a prune's delete failing) right after the Deployment was applied: the next
    reconcile still waits for the Deployment's controller before writing the status, as it does when
    the reconcile that applied it ran to the end (a status written now is written again at once)."""
    reconciler, api, store = _setup(status_wait_seconds=5.0)
    leader = True
    reconciler.may_write = lambda: leader
    apply = api.apply

    async def apply_then_lose_leadership(
        manifest: dict[str, Any], field_manager: str | None = None
    ) -> dict[str, Any]:
        nonlocal leader
        stored = await apply(manifest, field_manager)
        leader = leader and manifest["kind"] != "Deployment"
        return stored

    api.apply = apply_then_lose_leadership  # type: ignore[method-assign]
    with pytest.raises(NotLeader):
        await reconciler.reconcile(KEY)
    assert ("apply", "Deployment") in api.writes
    leader = True
    assert await reconciler.reconcile(KEY) is not None  # the Deployment's controller has not answered
    assert ("patch", "Chute/status") not in api.writes
    _rolled_out(store, available=0)
    assert await reconciler.reconcile(KEY) is None
    assert api.writes.count(("patch", "Chute/status")) == 1


async def test_a_failure_is_reported_without_waiting() -> None:
    reconciler, api, store = _setup(status_wait_seconds=5.0)
    await reconciler.reconcile(KEY)
    chute = copy.deepcopy(store.get("Chute", KEY))
    assert chute is not None
    chute["metadata"].update(generation=2, resourceVersion="900")
    chute["spec"]["maxInstances"] = 3
    store.put("Chute", chute)
    refused = Invalid("spec.replicas: Invalid value", 422, "Invalid")

    async def refuse(manifest: dict[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        raise refused

    api.apply = refuse  # type: ignore[method-assign]
    assert await reconciler.reconcile(KEY) is None
    assert api.writes[-2:] == [("create", "Event"), ("patch", "Chute/status")]  # the Warning, and Degraded
    assert api.events[-1] == ("Warning", "ApplyFailed")


async def test_a_child_that_cannot_be_looked_up_is_reported_as_its_apply_would_be() -> None:
    """observe.py reads a child the store lacks before anything is written; its failure is the child's
    own (Degraded, retried), and the NetworkPolicy's holds the Deployment back."""
    reconciler, api, store = _setup()

    async def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "NetworkPolicy":
            raise Forbidden("networkpolicies is forbidden", 403, "Forbidden")
        return None

    api.get = get  # type: ignore[method-assign]
    with pytest.raises(RetryLater):
        await reconciler.reconcile(KEY)
    applied = [kind for verb, kind in api.writes if verb == "apply"]
    assert applied == ["Service", "HorizontalPodAutoscaler"]
    degraded = [c for c in store.get("Chute", KEY)["status"]["conditions"] if c["type"] == "Degraded"]  # type: ignore[index]
    assert degraded[0]["reason"] == "ApplyFailed"
    assert "applying NetworkPolicy a: networkpolicies is forbidden" in degraded[0]["message"]
    assert "Deployment a not applied until its NetworkPolicy is in place" in degraded[0]["message"]


async def test_an_object_in_the_way_is_never_written_and_looked_at_again() -> None:
    reconciler, api, _ = _setup()

    async def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "Service":
            return {"kind": "Service", "metadata": {"name": name, "namespace": namespace, "uid": "theirs"}}
        return None

    api.get = get  # type: ignore[method-assign]
    with pytest.raises(RetryLater, match="Service a exists and is not owned by this Chute"):
        await reconciler.reconcile(KEY)
    assert ("apply", "Service") not in api.writes
    assert ("apply", "Deployment") in api.writes
    assert ("Warning", "ChildConflict") in api.events


async def test_a_sleep_is_confirmed_by_reading_each_sidecar_just_before() -> None:
    """The metrics API says the pod has been idle 63 s (its reading 8 s old): past the 60 s window.
    A request began since: only the sidecar, read in this reconcile, shows it (issue 25)."""
    store = Store()
    api = FakeApi(store)
    managers: list[str | None] = []
    applying = api.apply

    async def apply(manifest: dict[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        managers.append(field_manager)
        return await applying(manifest, field_manager)

    api.apply = apply  # type: ignore[method-assign]
    now_idle: dict[str, float | None] = {"a-1": None}  # the sidecar now: a request in flight
    confirmed: list[str] = []

    async def confirm_idle(namespace: str, pod: str) -> float | None:
        confirmed.append(pod)
        return now_idle[pod]

    cached = {"a-1": 63.0}
    reconciler = Reconciler(
        api,  # type: ignore[arg-type]
        store,
        RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test"),
        OperatorMetrics(),
        lambda: True,
        activator=lambda: Activator(("10.0.0.9",)),
        idle_seconds=lambda namespace, pod: cached.get(pod),
        confirm_idle=confirm_idle,
        activator_ports=(20000, 20009),
    )
    metadata = {"namespace": "ns", "uid": "u", "generation": 1, "resourceVersion": "1"}
    chute = cpu_chute(
        "a", metadata, monitoring={"serviceMonitor": False}, minInstances=0, shutdownAfterSeconds=60
    )
    store.put("Chute", chute)
    with contextlib.suppress(RetryLater):
        await reconciler.reconcile(KEY)  # creates the children
    deployment = copy.deepcopy(store.get("Deployment", KEY))
    assert deployment is not None
    deployment["spec"]["replicas"] = 1  # as the API server defaults it
    deployment["metadata"]["resourceVersion"] = "300"
    store.put("Deployment", deployment)
    running = {"running": {"startedAt": "2026-01-01T11:00:00Z"}}
    store.put("Pod", _pod(running, ready=True))
    for sidecar_now, sleeps in ((None, False), (1.5, False), (63.0, True)):
        now_idle["a-1"] = sidecar_now
        managers.clear()
        with contextlib.suppress(RetryLater):
            await reconciler.reconcile(KEY)
        assert ("chute-operator-zero" in managers) is sleeps, sidecar_now
    assert confirmed == ["a-1"] * 3
    cached["a-1"] = 30.0  # not idle for the window by the metrics API: no sidecar is read
    with contextlib.suppress(RetryLater):
        await reconciler.reconcile(KEY)
    assert confirmed == ["a-1"] * 3


def _hpa_failing_since(store: Store, since: datetime) -> dict[str, Any]:
    """The Chute's HPA, stored failing to read the metric since ``since`` (returned)."""
    hpa = copy.deepcopy(store.get("HorizontalPodAutoscaler", KEY))
    assert hpa is not None
    hpa["metadata"]["resourceVersion"] = "900"
    hpa["status"]["conditions"][1] = {
        "type": "ScalingActive",
        "status": "False",
        "reason": "FailedGetPodsMetric",
        "message": "the server is currently unable to handle the request",
        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    store.put("HorizontalPodAutoscaler", hpa)
    return hpa


async def test_a_metric_failure_within_the_grace_writes_nothing_and_is_looked_at_when_it_ends() -> None:
    """An operator restart: the HPA failed its metric read a few seconds ago. No status patch, no
    Event; the Chute is reconciled again when the grace ends, and reports it if it still fails."""
    from chute_operator.autoscaler import METRIC_GRACE_SECONDS

    reconciler, api, store = _setup()
    await reconciler.reconcile(KEY)
    pod = _pod({"running": {}}, ready=True)
    store.put("Pod", pod)
    _rolled_out(store, available=1)
    await reconciler.reconcile(KEY)
    autoscaling = [c for c in store.get("Chute", KEY)["status"]["conditions"] if c["type"] == "Autoscaling"]  # type: ignore[index]
    assert autoscaling[0]["reason"] == "ScalingActive"

    since = datetime.now(UTC) - timedelta(seconds=5)
    hpa = _hpa_failing_since(store, since)
    before = len(api.writes)
    wait = await reconciler.reconcile(KEY)
    assert api.writes[before:] == []
    assert wait is not None
    assert METRIC_GRACE_SECONDS - 10 < wait <= METRIC_GRACE_SECONDS - 4

    hpa["status"]["conditions"][1]["lastTransitionTime"] = (
        since - timedelta(seconds=METRIC_GRACE_SECONDS)
    ).strftime("%Y-%m-%dT%H:%M:%SZ")
    hpa["metadata"]["resourceVersion"] = "901"
    store.put("HorizontalPodAutoscaler", hpa)
    assert await reconciler.reconcile(KEY) is None
    assert api.writes[before:] == [("patch", "Chute/status"), ("create", "Event")]


async def test_a_metric_failure_from_before_the_caches_synced_is_given_the_grace_from_then() -> None:
    """At 5000 Chutes a restarted operator took over a minute to reconcile them all, and 61 Chutes
    whose HPAs had failed while its metrics API was away said MetricUnavailable (a status patch and
    an Event each) only because they came late (fleet-5000-final.json)."""
    from chute_operator.autoscaler import METRIC_GRACE_SECONDS

    reconciler, api, store = _setup()
    await reconciler.reconcile(KEY)
    store.put("Pod", _pod({"running": {}}, ready=True))
    _rolled_out(store, available=1)
    await reconciler.reconcile(KEY)
    now = datetime.now(UTC)
    _hpa_failing_since(store, now - timedelta(seconds=METRIC_GRACE_SECONDS + 30))
    reconciler.metric_grace_from = now - timedelta(seconds=5)
    before = len(api.writes)
    wait = await reconciler.reconcile(KEY)
    assert api.writes[before:] == []
    assert wait is not None
    assert METRIC_GRACE_SECONDS - 10 < wait <= METRIC_GRACE_SECONDS - 4
