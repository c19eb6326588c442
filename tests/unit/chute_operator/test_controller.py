"""The controller reconciles nothing until its caches are filled by one listing per kind."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from chute_operator.controller import Controller
from chute_operator.gpus import builtin_catalog
from chute_operator.kube import ApiFailure
from chute_operator.metrics import OperatorMetrics
from chute_operator.settings import Leadership, Reconciling, ScaleToZero, Settings, Watching
from chute_operator.store import Key
from chute_operator.workqueue import WorkQueue
from chute_operator.zero import ASLEEP_ANNOTATION as ASLEEP
from chute_operator.zero import UNREAD, Activator

CATALOG = builtin_catalog()


def _settings(
    workers: int = 16,
    child_event_delay_seconds: float = 0.5,
    resync_seconds: float = 600.0,
    monitoring_recheck_seconds: float = 60.0,
) -> Settings:
    """Settings without leader election."""
    return Settings(
        leadership=Leadership(enabled=False),
        reconciling=Reconciling(workers=workers, child_event_delay_seconds=child_event_delay_seconds),
        watching=Watching(
            resync_seconds=resync_seconds, monitoring_recheck_seconds=monitoring_recheck_seconds
        ),
    )


CHUTE = {"apiVersion": "chutes.ai/v1alpha1", "kind": "Chute", "metadata": {"name": "a", "namespace": "ns"}}


async def test_no_reconcile_before_the_initial_listing() -> None:
    settings = _settings(workers=2, resync_seconds=3600, monitoring_recheck_seconds=3600)
    controller = Controller(settings, client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    listing_may_finish = asyncio.Event()
    listed: list[str] = []
    reconciled: list[Key] = []

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        await listing_may_finish.wait()
        listed.append(kind)
        return ([CHUTE] if kind == "Chute" else []), "1"

    async def reconcile(key: Key) -> None:
        reconciled.append(key)  # (an assertion here would be caught by the controller's retries)

    controller.api.listing = listing  # type: ignore[method-assign]
    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    controller.start()
    try:
        controller.observe("Chute", None, CHUTE)  # a watch event arrives before the listing is done
        await asyncio.sleep(0.2)
        assert reconciled == []
        assert controller.reconciler.metric_grace_from is None
        listing_may_finish.set()
        for _ in range(100):
            if reconciled:
                break
            await asyncio.sleep(0.01)
        assert reconciled == [("ns", "a")]
        assert controller.reconciler.metric_grace_from is not None  # a metric failure's grace from then
        assert set(listed) >= {"Chute", "Deployment", "Service", "Pod"}
        assert controller.store.get("Chute", ("ns", "a")) == CHUTE
    finally:
        await controller.stop()


def test_readiness_metrics_are_read_from_the_store_at_scrape_time() -> None:
    metrics = OperatorMetrics()
    controller = Controller(_settings(), client=None, metrics=metrics, catalog=CATALOG)  # type: ignore[arg-type]
    ready = {"type": "Ready", "status": "True", "reason": "Serving"}
    stuck = {"type": "Ready", "status": "False", "reason": "Unschedulable"}
    for name, condition in (("a", ready), ("b", stuck)):
        controller.observe(
            "Chute",
            None,
            {**CHUTE, "metadata": {"name": name, "namespace": "ns"}, "status": {"conditions": [condition]}},
        )
    controller.observe("Chute", None, {**CHUTE, "metadata": {"name": "new", "namespace": "ns"}})

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("chute_operator_chute_ready", chute_namespace="ns", chute="a", reason="") == 1
    assert sample("chute_operator_chute_ready", chute_namespace="ns", chute="b", reason="Unschedulable") == 0
    assert (
        sample("chute_operator_chutes", ready="True"),
        sample("chute_operator_chutes", ready="False"),
    ) == (1, 1)
    assert sample("chute_operator_chutes", ready="Unknown") == 1
    controller.observe("Chute", "DELETED", {**CHUTE, "metadata": {"name": "b", "namespace": "ns"}})
    assert (
        sample("chute_operator_chute_ready", chute_namespace="ns", chute="b", reason="Unschedulable") is None
    )


def _child(name: str, uid: str, version: str) -> dict[str, Any]:
    labels = {"chutes.ai/chute": "a", "app.kubernetes.io/managed-by": "chute-operator"}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": version,
            "labels": labels,
        }
    }


async def test_a_relist_forgets_children_whose_deleted_event_was_missed() -> None:
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    controller.observe("Chute", None, {**CHUTE, "metadata": {**CHUTE["metadata"], "resourceVersion": "1"}})
    controller.observe("Pod", None, _child("a-1", "u1", "2"))
    controller.observe("Pod", None, _child("a-2", "u2", "3"))

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        return {"Chute": [CHUTE], "Pod": [_child("a-1", "u1", "2")]}.get(kind, []), "7"

    controller.api.listing = listing  # type: ignore[method-assign]
    await controller.relist()
    assert [p["metadata"]["name"] for p in controller.store.children("Pod", ("ns", "a"))] == ["a-1"]
    assert controller.store.get("Chute", ("ns", "a")) is not None


async def test_a_late_deleted_event_leaves_the_newer_object_of_that_name() -> None:
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    controller.observe("Pod", None, _child("a-1", "old", "2"))
    controller.observe("Pod", None, _child("a-1", "new", "5"))
    controller.observe("Pod", "DELETED", _child("a-1", "old", "4"))
    assert controller.store.get("Pod", ("ns", "a-1"))["metadata"]["uid"] == "new"  # type: ignore[index]


def _pod(chute: str, name: str, version: int) -> dict[str, Any]:
    labels = {"chutes.ai/chute": chute, "app.kubernetes.io/managed-by": "chute-operator"}
    meta = {"name": name, "namespace": "ns", "uid": name, "resourceVersion": str(version), "labels": labels}
    return {"metadata": meta}


async def _started(settings: Settings, reconcile: Any) -> Controller:
    controller = Controller(settings, client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        return [], "1"

    controller.api.listing = listing  # type: ignore[method-assign]
    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    controller.start()
    await asyncio.wait_for(controller._synced.wait(), 5)
    return controller


async def test_a_burst_of_pod_events_is_one_reconcile() -> None:
    """A pod starting is a burst of watch events (created, scheduled, running, ready, and its
    Deployment's status with each): reconciling the Chute once per event cost a 200-Chute run over
    5000 reconciles where 500 did, and starved the watch streams."""
    reconciled: list[Key] = []

    async def reconcile(key: Key) -> None:
        reconciled.append(key)
        await asyncio.sleep(0.01)  # an API call

    settings = _settings(workers=4, child_event_delay_seconds=0.3, resync_seconds=3600)
    controller = await _started(settings, reconcile)
    try:
        for version in range(5):
            controller.observe("Pod", None, _pod("a", "a-1", 10 + version))
            await asyncio.sleep(0.04)
        await asyncio.sleep(0.5)
        assert reconciled == [("ns", "a")]
        changed = {**CHUTE, "metadata": {**CHUTE["metadata"], "resourceVersion": "2"}}
        controller.observe("Chute", None, changed)
        await asyncio.sleep(0.05)
        assert reconciled == [("ns", "a")] * 2  # the Chute's own events are not delayed
    finally:
        await controller.stop()


async def test_the_echo_of_the_operators_own_write_queues_no_reconcile() -> None:
    """The operator stores what each of its writes returns; the watch event of that same version (the
    echo of a status patch or of an apply) then brings nothing new. At 1000 Chutes each status patch
    was followed by such a reconcile (4.9 reconciles per Chute on the way to Ready)."""
    reconciled: list[Key] = []

    async def reconcile(key: Key) -> None:
        reconciled.append(key)

    settings = _settings(workers=2, child_event_delay_seconds=0.05, resync_seconds=3600)
    controller = await _started(settings, reconcile)
    try:
        written = {**CHUTE, "metadata": {**CHUTE["metadata"], "uid": "c", "resourceVersion": "7"}}
        controller.store.put("Chute", written)  # what the status patch answered
        controller.observe("Chute", None, dict(written))  # its echo
        deployment = _pod("a", "a", 8) | {"kind": "Deployment"}
        controller.store.put("Deployment", deployment)  # what the apply answered
        controller.observe("Deployment", None, dict(deployment))
        await asyncio.sleep(0.2)
        assert reconciled == []
        controller.observe(
            "Chute", None, {**written, "metadata": {**written["metadata"], "resourceVersion": "9"}}
        )
        controller.observe("Deployment", None, _pod("a", "a", 10) | {"kind": "Deployment"})
        await asyncio.sleep(0.2)
        assert (
            reconciled == [("ns", "a")] * 2
        )  # a newer version does (the Chute's at once, the child's later)
    finally:
        await controller.stop()


async def test_workers_let_the_watch_streams_run_between_reconciles() -> None:
    """A reconcile that changes nothing awaits nothing; the workers must still yield to the event loop
    between keys, or kopf's reading of the watch streams waits for the whole queue."""
    reconciled: list[Key] = []
    seen_by_other_task: list[int] = []

    async def reconcile(key: Key) -> None:
        reconciled.append(key)  # no API call: nothing drifted

    async def watch_stream() -> None:
        while len(reconciled) < 100:
            seen_by_other_task.append(len(reconciled))
            await asyncio.sleep(0)

    settings = _settings(workers=2, resync_seconds=3600)
    controller = await _started(settings, reconcile)
    try:
        for i in range(100):
            controller.queue.add(("ns", f"c-{i}"))
        await asyncio.wait_for(watch_stream(), 5)
        assert len(reconciled) == 100
        assert any(0 < seen < 90 for seen in seen_by_other_task), seen_by_other_task
    finally:
        await controller.stop()


async def test_a_chute_throttled_again_and_again_comes_back_when_the_api_server_says() -> None:
    """Under 429s every reconcile may fail for a while. Counted as failures, they grew the backoff to
    its 300 s cap (1, 2, 4 ... 256 s): the throttling benchmark converged only at the 600 s resync.
    The server says when to come back (Retry-After); the key comes back then."""
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]

    async def reconcile(key: Key) -> None:
        raise ApiFailure("the server has received too many requests", 429, "TooManyRequests", 1.0)

    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    try:
        for _ in range(12):
            await controller._reconcile(("ns", "a"))
            delay = controller.queue._timers[("ns", "a")].when() - loop.time()
            assert delay <= 2.0
            controller.queue._timers.pop(("ns", "a")).cancel()
        assert (
            controller.metrics.registry.get_sample_value("chute_operator_api_errors_total", {"code": "429"})
            == 12
        )
    finally:
        controller.queue.close()


ACTIVATOR_SLICE = {
    "metadata": {"name": "activator-1", "namespace": "system"},
    "ports": [{"name": "http", "port": 8080}],
    "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": True}}],
}


async def test_the_activator_is_read_before_the_first_reconcile_and_again_on_gaining_leadership() -> None:
    """A reconcile that ran before the activator was read would take it out of every Chute at zero
    (issue 25): the cache sync reads it first; a new leader reads it again before touching slices."""
    settings = Settings(
        leadership=Leadership(enabled=False),
        watching=Watching(resync_seconds=3600, monitoring_recheck_seconds=3600),
        scale_to_zero=ScaleToZero(activator_service="system/activator", check_seconds=3600),
    )
    controller = Controller(settings, client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    assert controller.activator is UNREAD
    seen: list[object] = []
    reads: list[str] = []

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        return ([CHUTE] if kind == "Chute" else []), "1"

    async def endpoint_slices(namespace: str, service: str) -> list[dict[str, Any]]:
        reads.append(f"{namespace}/{service}")
        return [ACTIVATOR_SLICE]

    async def reconcile(key: Key) -> None:
        seen.append(controller.reconciler.observer.activator())

    controller.api.listing = listing  # type: ignore[method-assign]
    controller.api.endpoint_slices = endpoint_slices  # type: ignore[method-assign]
    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    controller.start()
    try:
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [Activator(("10.0.0.9",))]
        assert reads == ["system/activator"]
        controller._on_leadership(True)
        assert controller.activator is UNREAD  # a standby's reading may be stale
        for _ in range(100):
            if len(reads) == 2 and controller.activator is not UNREAD:
                break
            await asyncio.sleep(0.01)
        assert controller.activator == Activator(("10.0.0.9",))
    finally:
        await controller.stop()


async def test_a_kind_relisted_after_kopf_relisted_it_forgets_what_was_deleted_and_queues_its_chutes() -> (
    None
):
    """kopf lists a kind again when its watch cannot resume (410 Gone, an API server restart), and
    hands the handlers only what exists: the store relists that kind, forgets what the listing lacks,
    and queues the Chutes it changed (only those: a relist that finds nothing new queues nothing)."""
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    for name in ("a", "gone"):
        controller.store.put("Chute", _pod(name, name, 1) | {"kind": "Chute"})
    controller.store.put("Pod", _pod("a", "a-1", 2))
    controller.store.put("Pod", _pod("a", "a-2", 3))
    controller.store.put("Pod", _pod("b", "b-1", 4))
    asked: list[tuple[str, tuple[str, ...]]] = []

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        asked.append((kind, namespaces))
        if kind == "Chute":
            return [_pod("a", "a", 1) | {"kind": "Chute"}], "9"
        return [_pod("a", "a-1", 2), _pod("b", "b-1", 4)], "9"

    controller.api.listing = listing  # type: ignore[method-assign]
    controller._synced.set()
    await controller.relist_kind("Pod", "ns")
    assert asked == [("Pod", ("ns",))]
    assert [p["metadata"]["name"] for p in controller.store.children("Pod", ("ns", "a"))] == ["a-1"]
    assert set(controller.queue._queued) == {("ns", "a")}
    controller.queue = WorkQueue()
    await controller.relist_kind("Pod", "ns")
    assert set(controller.queue._queued) == set()  # nothing new: no reconcile, no write
    await controller.relist_kind("Chute", None)  # cluster-wide: every watched namespace
    assert asked[-1] == ("Chute", ())
    assert controller.store.get("Chute", ("ns", "gone")) is None
    assert set(controller.queue._queued) == {("ns", "gone")}  # its reconcile forgets it


async def test_a_listing_taken_before_a_deletion_the_watch_delivered_does_not_bring_the_pod_back() -> None:
    """A relist's LIST is answered at version 7 and still has the pod; its DELETED event (version 9)
    arrives while the listing is read. The listing re-added it: a ghost pod, counted as a replica
    (a Chute at zero then lost its activator slice) until the next resync, 600 s later."""
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    controller.observe("Pod", None, _child("a-1", "u1", "5"))

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        controller.observe("Pod", "DELETED", _child("a-1", "u1", "9"))  # delivered during the LIST
        return [_child("a-1", "u1", "5")], "7"

    controller.api.listing = listing  # type: ignore[method-assign]
    await controller.relist_kind("Pod", "ns")
    assert controller.store.get("Pod", ("ns", "a-1")) is None
    assert set(controller.queue._queued) == set()

    async def later(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        return [_child("a-1", "u2", "12")], "12"  # created again under that name: kept

    controller.api.listing = later  # type: ignore[method-assign]
    await controller.relist_kind("Pod", "ns")
    assert controller.store.get("Pod", ("ns", "a-1"))["metadata"]["uid"] == "u2"  # type: ignore[index]
    assert controller.store._deleted["Pod"] == {}  # forgotten once a newer listing came

    # the operator deletes a child itself (a prune), which forgets it at once; its DELETED event
    # comes while a listing taken before the delete is read
    controller.observe("Pod", None, _child("a-2", "u3", "13"))
    controller.store.remove("Pod", ("ns", "a-2"))

    async def before_the_delete(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        controller.observe("Pod", "DELETED", _child("a-2", "u3", "15"))
        return [_child("a-1", "u2", "12"), _child("a-2", "u3", "13")], "14"

    controller.api.listing = before_the_delete  # type: ignore[method-assign]
    await controller.relist_kind("Pod", "ns")
    assert controller.store.get("Pod", ("ns", "a-2")) is None


async def test_an_unread_or_podless_activator_is_reported_and_flapping_keeps_no_tasks() -> None:
    """An activator Service that cannot be read (RBAC, API errors) left the operator UNREAD for good:
    no Chute ever went to zero and no activator slice was touched, told only by a log line; one with
    no ready pod (rollout, crash) took the activator out of every Chute at zero, told nowhere. And
    every leadership gain kept its reading task in a list for the process's life."""
    settings = Settings(
        leadership=Leadership(enabled=False),
        watching=Watching(resync_seconds=3600, monitoring_recheck_seconds=3600),
        scale_to_zero=ScaleToZero(activator_service="system/activator", check_seconds=3600),
    )
    metrics = OperatorMetrics()
    controller = Controller(settings, client=None, metrics=metrics, catalog=CATALOG)  # type: ignore[arg-type]
    answers: list[Any] = [RuntimeError("forbidden"), [], [ACTIVATOR_SLICE]]

    async def endpoint_slices(namespace: str, service: str) -> list[dict[str, Any]]:
        answer = answers.pop(0) if answers else [ACTIVATOR_SLICE]
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    def pods() -> float | None:
        return metrics.registry.get_sample_value("chute_operator_activator_ready_pods")

    controller.api.endpoint_slices = endpoint_slices  # type: ignore[method-assign]
    try:
        await controller._read_activator()
        assert controller.activator is UNREAD
        assert pods() == -1  # not read
        await controller._read_activator()
        assert pods() == 0
        await controller._read_activator()
        assert pods() == 1
        tasks_before = len(controller._tasks)
        for _ in range(50):  # leadership flapping
            controller._on_leadership(True)
            controller._on_leadership(False)
            await asyncio.sleep(0)
        for _ in range(100):
            if all(task.done() for task in controller._tasks):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        assert len(controller._tasks) <= tasks_before + 1
    finally:
        await controller.stop()


def _zero_chute(name: str) -> dict[str, Any]:
    return {**CHUTE, "metadata": {"name": name, "namespace": "ns"}, "spec": {"minInstances": 0}}


def test_the_periodic_check_queues_sleeping_chutes_only_when_the_activator_reading_changes() -> None:
    """A Chute at zero changes only on an event or a new activator reading, and an awake one can only
    decide to sleep once its readings say every pod has been idle for its window: the 5 s check leaves
    the others (900 reconciles a second at 4,500 asleep, 200 at 1000 awake, each deciding to stay)."""
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    for name in ("awake", "idle", "asleep", "fixed"):
        chute = _zero_chute(name)
        chute["spec"]["shutdownAfterSeconds"] = 60
        if name == "fixed":
            chute["spec"] = {"minInstances": 1}
        controller.store.put("Chute", chute)
        ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        labels = {"chutes.ai/chute": name}
        controller.store.put(
            "Pod", {"metadata": {"name": f"{name}-1", "namespace": "ns", "labels": labels}, "status": ready}
        )
    at = "2026-12-07T05:00:00Z"
    asleep = {
        "metadata": {"name": "asleep", "namespace": "ns", "annotations": {ASLEEP: at}},
        "spec": {"replicas": 0},
    }
    controller.store.put("Deployment", asleep)
    for name in ("awake", "idle"):
        controller.store.put(
            "Deployment", {"metadata": {"name": name, "namespace": "ns"}, "spec": {"replicas": 1}}
        )
    readings = {"awake-1": 59.0, "idle-1": 60.0, "asleep-1": 600.0, "fixed-1": 600.0}
    controller.idle_seconds = lambda namespace, pod: readings.get(pod)
    controller._queue_scale_to_zero(asleep_too=False)
    assert len(controller.queue) == 1  # idle: may sleep now
    readings["awake-1"] = 61.0
    controller._queue_scale_to_zero(asleep_too=False)
    assert len(controller.queue) == 2
    controller._queue_scale_to_zero(asleep_too=True)
    assert len(controller.queue) == 3  # and the one asleep; never the fixed one


SERVICE_MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {
        "name": "a",
        "namespace": "ns",
        "resourceVersion": "5",
        "labels": {"chutes.ai/chute": "a"},
    },
}


async def test_an_optional_api_that_goes_away_is_noticed_and_its_objects_forgotten() -> None:
    """kopf stops watching a kind when its CRD is deleted, and may stop before the DELETED events of
    its objects arrive (the ServiceMonitors the CRD's deletion removes): a store fed by events keeps
    them, the Chute plans no write, and says Monitored=True for ever (a chart test found it). The
    recheck of the optional APIs looks at those still served too; one gone is relisted."""
    settings = _settings(workers=2, resync_seconds=3600, monitoring_recheck_seconds=0.05)
    controller = Controller(settings, client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    served = {"ServiceMonitor": True}
    reconciled: list[Key] = []

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        if kind == "Chute":
            return [CHUTE], "1"
        if kind == "ServiceMonitor" and served["ServiceMonitor"]:
            return [SERVICE_MONITOR], "6"
        return [], ""  # (the listing of an API that is not served: kube.listing)

    async def kind_served(kind: str) -> bool:
        return served.get(kind, False)

    async def reconcile(key: Key) -> None:
        reconciled.append(key)

    controller.api.listing = listing  # type: ignore[method-assign]
    controller.api.kind_served = kind_served  # type: ignore[method-assign]
    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    controller.reconciler.apis.available["ServiceMonitor"] = True
    controller.start()
    try:
        for _ in range(100):
            if reconciled:
                break
            await asyncio.sleep(0.01)
        assert controller.store.get("ServiceMonitor", ("ns", "a")) is not None
        reconciled.clear()
        served["ServiceMonitor"] = False  # the CRD is deleted; no DELETED event reaches the store
        for _ in range(200):
            if reconciled and controller.store.get("ServiceMonitor", ("ns", "a")) is None:
                break
            await asyncio.sleep(0.01)
        assert controller.store.get("ServiceMonitor", ("ns", "a")) is None
        assert ("ns", "a") in reconciled
        assert controller.reconciler.apis.missing() == ("ServiceMonitor",)
    finally:
        await controller.stop()


async def test_a_chute_event_goes_before_the_resyncs_backlog() -> None:
    """The resync queues every Chute (5000 of them, reconciled 12 a second on a loaded API server):
    a wake request arriving then was reconciled only after all of them."""
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    chutes = [_pod(f"c{i}", f"c{i}", 1) | {"kind": "Chute"} for i in range(50)]

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        return (chutes, "9") if kind == "Chute" else ([], "9")

    controller.api.listing = listing  # type: ignore[method-assign]
    await controller.relist()
    assert len(controller.queue) == 50
    woken = copy.deepcopy(chutes[-1])
    woken["metadata"]["resourceVersion"] = "10"
    woken["metadata"].setdefault("annotations", {})["chutes.ai/wake-requested-at"] = "now"
    controller.observe("Chute", "MODIFIED", woken)
    assert await controller.queue.get() == ("ns", "c49")


async def test_the_pods_are_listed_first_and_known_as_listed_before_the_rest() -> None:
    """The metrics API needs only the pods: at 5000 Chutes the whole initial listing took long enough
    on a loaded API server that the HPAs failed for over a minute after a restart (67 Chutes reported
    MetricUnavailable). The pods are listed first, and the metrics API answers once they are."""
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    asked: list[str] = []
    release = asyncio.Event()

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        asked.append(kind)
        if kind not in ("Pod", "HorizontalPodAutoscaler"):
            await release.wait()
        return [], "1"

    controller.api.listing = listing  # type: ignore[method-assign]
    syncing = asyncio.create_task(controller.relist())
    for _ in range(10):
        await asyncio.sleep(0)
    assert asked[:2] == ["Pod", "HorizontalPodAutoscaler"]
    assert controller.listed("Pod")
    assert not controller.listed("Chute")
    release.set()
    await asyncio.wait_for(syncing, 5)
    assert controller.listed("Chute")


async def test_a_chute_an_informer_lists_before_the_sync_ends_is_queued_in_the_background() -> None:
    """A listing handed over while the sync still waits (a relist after 410) changes the store: its
    Chutes are queued behind events, not forgotten until their next event."""
    settings = _settings(workers=1, resync_seconds=3600, monitoring_recheck_seconds=3600)
    controller = Controller(settings, client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    controller._informer_listed("Chute", "ns", [CHUTE], "5")
    assert controller.queue._queued == {("ns", "a"): True}  # queued, in the background lane
