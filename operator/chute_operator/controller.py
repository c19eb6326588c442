"""The controller: watch events fill the store and queue Chute keys; workers reconcile them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient

from chute_operator.api.reasons import READY, SIDECAR_CURRENT
from chute_operator.capabilities import ASSUMED, ServerCapabilities
from chute_operator.conditions import find
from chute_operator.gpu_profile_pick import ProfilePick
from chute_operator.gpus import Catalog
from chute_operator.informer import Informer
from chute_operator.kube import WATCHED_KINDS, KubeApi, error_code, error_message, throttled_for
from chute_operator.leader import LeaderElector
from chute_operator.metrics import ChuteReadiness, OperatorMetrics
from chute_operator.observe import ConfirmIdle, IdleReadings, no_confirmation, no_readings
from chute_operator.reconcile import NotLeader, Reconciler, RetryLater
from chute_operator.settings import Settings
from chute_operator.sidecars import SidecarUpdates
from chute_operator.store import Key, Store, chute_of, key_of
from chute_operator.transport import ApiTransport
from chute_operator.weights import WEIGHTS_PREFIX, is_cache_object, owners
from chute_operator.workqueue import WorkQueue
from chute_operator.zero import (
    ABSENT,
    UNREAD,
    Activator,
    ActivatorReading,
    activator_from_slices,
    asleep_since,
    idle_for,
)
from chute_shared.cluster import CHUTE_KIND, MANAGED_BY
from chute_shared.weights import WEIGHTS_LABEL

FIRST_LISTED = ("Pod", "HorizontalPodAutoscaler")
"""Listed first: all the metrics API reads (a restarted operator answers the HPAs sooner)."""
LIST_ORDER = (*FIRST_LISTED, *(kind for kind in WATCHED_KINDS if kind not in FIRST_LISTED))

log = logging.getLogger(__name__)
RELIST_ATTEMPTS = 5
RELIST_RETRY_SECONDS = 2.0


def _labels(kind: str) -> dict[str, Any] | None:
    """The label selector a kind is listed with (the operator's children only; every Chute)."""
    return None if kind == "Chute" else {"app.kubernetes.io/managed-by": MANAGED_BY}


def cache_users(kind: str, obj: dict[str, Any], store: Store) -> list[Key]:
    """The Chutes a weights cache's object concerns: its owners (a download pod's: its Job's)."""
    if not is_cache_object(obj):
        return []
    namespace = key_of(obj)[0]
    if kind == "Pod":
        label = (obj.get("metadata") or {}).get("labels", {}).get(WEIGHTS_LABEL, "")
        obj = store.get("Job", (namespace, WEIGHTS_PREFIX + label)) or {}
    return [(namespace, ref.get("name", "")) for ref in owners(obj) if ref.get("kind") == CHUTE_KIND]


class Controller:
    """Owns the store, the queue, the workers and (optionally) leader election."""

    def __init__(
        self,
        settings: Settings,
        client: AsyncClient,
        metrics: OperatorMetrics,
        catalog: Catalog,
        drain_key: bytes | None = None,
        gpu_profile: ProfilePick | None = None,
        server: ServerCapabilities = ASSUMED,
    ) -> None:
        """``server``: what the API server accepts, learned at start (discover.py)."""
        self.settings, self.metrics = settings, metrics
        self.store = Store()
        self.queue = WorkQueue()
        self.api = KubeApi(
            client, settings.reconciling.field_manager, "chute-operator", settings.leadership.identity
        )
        options = settings.render_options(catalog, drain_key, gpu_profile, server)
        self.elector = (
            LeaderElector(
                client,
                settings.leadership.namespace,
                settings.leadership.name,
                settings.leadership.identity,
                settings.leadership.duration_seconds,
                settings.leadership.renew_seconds,
                on_change=self._on_leadership,
            )
            if settings.leadership.enabled
            else None
        )
        self.activator: ActivatorReading = UNREAD if settings.scale_to_zero.activator_service else ABSENT
        """The activator's ready pods as last read (at the cache sync, on gaining leadership, then by
        the scale-to-zero loop); UNREAD until then: no reconcile touches an activator slice."""
        self.idle_seconds: IdleReadings = no_readings
        """The metrics API's idle readings, once it serves them (handlers.py)."""
        self._report_activator()
        self.confirm_idle: ConfirmIdle = no_confirmation
        """Its read of a sidecar now, to confirm a sleep (handlers.py)."""
        self.reconciler = Reconciler(
            self.api,
            self.store,
            options,
            metrics,
            self.is_leader,
            status_wait_seconds=settings.reconciling.status_wait_seconds,
            activator=lambda: self.activator,
            idle_seconds=lambda namespace, pod: self.idle_seconds(namespace, pod),
            confirm_idle=lambda namespace, pod: self.confirm_idle(namespace, pod),
            activator_ports=(
                settings.scale_to_zero.activator_ports if settings.scale_to_zero.activator_service else None
            ),
            sidecars=SidecarUpdates(settings.sidecar_policy(), wake=self.queue.add),
        )
        self._tasks: list[asyncio.Task[None]] = []
        metrics.track_readiness(self.readiness)
        self._synced = asyncio.Event()
        self._listed: set[str] = set()
        self._relisting: dict[tuple[str, str | None], asyncio.Task[None]] = {}
        self._relist_wanted: set[tuple[str, str | None]] = set()
        self._unserved_once: set[str] = set()
        """Optional kinds read once as not served by the recheck (gone only when read so again)."""
        self._informers: list[Informer] = []
        self._watches: ApiTransport | None = None

    def watch(self, kinds: tuple[str, ...], transport: ApiTransport) -> None:
        """Watch ``kinds`` with the controller's own informers (informer.py), in every watched
        namespace, over ``transport`` (the watches' own connections). Called before :meth:`start`:
        their first listings are the store's sync of these kinds."""
        watching = self.settings.watching
        self._watches = transport
        for kind in kinds:
            for namespace in watching.namespaces or ("",):
                self._informers.append(
                    Informer(
                        self.api,
                        transport,
                        kind,
                        namespace,
                        _labels(kind),
                        self._informer_listed,
                        self.observe,
                        watching.server_timeout,
                        watching.client_timeout,
                    )
                )

    def _informer_listed(
        self, kind: str, namespace: str, objects: list[dict[str, Any]], version: str
    ) -> None:
        """An informer's listing: the store made to agree with it, and the Chutes it changed queued
        (a listing that finds nothing new reconciles nothing); before the sync, in the background."""
        changed = self.store.replace(kind, objects, version, (namespace,) if namespace else ())
        if all(informer.listings for informer in self._informers if informer.kind == kind):
            self._listed.add(kind)
        background = not self._synced.is_set()  # before the sync: behind events, as the sync's own
        for key in changed:
            self.queue.add(key, background)

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def observe(self, kind: str, event_type: str | None, obj: dict[str, Any]) -> None:
        """Record a watch event and queue the Chute it concerns: at once for the Chute's own events,
        after ``child_event_delay_seconds`` for a child's or a pod's (the burst of events of a pod
        starting is then one reconcile, not one each)."""
        if event_type == "DELETED":
            meta = obj.get("metadata") or {}
            self.store.remove(kind, key_of(obj), meta.get("uid"), meta.get("resourceVersion"))
        elif not self.store.put(kind, obj):
            return  # a version the store holds (the echo of our own write, stored from its answer) or older
        # kopf's initial listing (each object an event of type None) before the caches synced is a
        # listing, as the controller's own: in the background, behind events (a wake request). After
        # it, a listing event the store did not hold is a change a watch gap hid: an event.
        background = event_type is None and not self._synced.is_set()
        if kind == "Chute":
            self.queue.add(key_of(obj), background)
            return
        delay = self.settings.reconciling.child_event_delay_seconds
        owner = chute_of(obj)
        if owner:
            self.queue.add_after((key_of(obj)[0], owner), delay, background)
            return
        for chute in cache_users(kind, obj, self.store):
            self.queue.add_after(chute, delay, background)

    async def relist(self, kinds: tuple[str, ...] = LIST_ORDER) -> None:
        """One LIST per watched kind (of ``kinds``), and the store made to agree with it: objects
        whose DELETED event was missed (a watch that broke and resumed) are forgotten. Queues every
        Chute."""
        for kind in kinds:
            listed, version = await self.api.listing(kind, self.settings.watching.namespaces, _labels(kind))
            self.store.replace(kind, listed, version, self.settings.watching.namespaces)
            self._listed.add(kind)
        for key in self.store.keys("Chute"):
            self.queue.add(key, background=True)  # behind any event (a wake request)

    def listed(self, kind: str) -> bool:
        """Whether the store holds a first listing of ``kind`` (the metrics API answers once it holds
        the pods, before the other kinds are listed)."""
        return kind in self._listed

    async def relist_kind(self, kind: str, namespace: str | None) -> None:
        """One LIST of ``kind`` in ``namespace`` (None: every watched namespace), the store made to
        agree with it, and only the Chutes it changed queued: a relist that finds nothing new
        reconciles nothing and writes nothing."""
        namespaces = (namespace,) if namespace else self.settings.watching.namespaces
        listed, version = await self.api.listing(kind, namespaces, _labels(kind))
        for key in self.store.replace(kind, listed, version, namespaces):
            self.queue.add(key)

    def relist_soon(self, kind: str, namespace: str | None) -> None:
        """Relist ``kind`` in the background: kopf has just listed it again because its watch could
        not resume (relisting.py), and objects deleted in the gap got no event. After the initial
        sync; a request while one runs makes it run once more."""
        where = (kind, namespace)
        self._relist_wanted.add(where)
        if where not in self._relisting:
            task = asyncio.create_task(self._relist_wanted_kind(where), name=f"relist-{kind}")
            self._relisting[where] = task
            task.add_done_callback(lambda _: self._relisting.pop(where, None))

    async def _relist_wanted_kind(self, where: tuple[str, str | None]) -> None:
        await self._synced.wait()
        log.info("relisting %s: objects deleted while its watch was cut are forgotten", where[0])
        while where in self._relist_wanted:
            self._relist_wanted.discard(where)
            for attempt in range(RELIST_ATTEMPTS):
                try:
                    await self.relist_kind(*where)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the periodic resync catches up if every attempt fails
                    log.warning(
                        "relisting %s failed (%s), attempt %d", where[0], error_message(error), attempt + 1
                    )
                    await asyncio.sleep(RELIST_RETRY_SECONDS)

    async def sync(self) -> None:
        """Fill the store with one LIST per watched kind before any reconcile (as controller-runtime
        waits for its caches): a cold operator must not take a child it has not seen yet for missing.
        The kinds the informers watch are listed by them."""
        await asyncio.gather(*(informer.synced.wait() for informer in self._informers))
        informed = {informer.kind for informer in self._informers}
        while True:
            try:
                await self.relist(tuple(kind for kind in LIST_ORDER if kind not in informed))
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("initial listing failed (%s), retrying", error_message(error))
                await asyncio.sleep(2)
        await self._read_activator()
        self.reconciler.metric_grace_from = datetime.now(UTC)
        self._synced.set()
        log.info("caches synced: %d Chutes", len(self.store.keys("Chute")))

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(informer.run(), name=f"watch-{informer.kind}-{informer.namespace}")
            for informer in self._informers
        ]
        self._tasks.append(asyncio.create_task(self.sync(), name="sync"))
        self._tasks += [
            asyncio.create_task(self._work(), name=f"worker-{i}")
            for i in range(self.settings.reconciling.workers)
        ]
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
        self._tasks.append(asyncio.create_task(self._watch_optional_apis(), name="monitoring-api"))
        if self.settings.scale_to_zero.activator_service:
            self._tasks.append(asyncio.create_task(self._scale_to_zero(), name="scale-to-zero"))
        if self.elector is not None:
            self._tasks.append(asyncio.create_task(self.elector.run(), name="leader-election"))
        else:
            self.metrics.leader.set(1)

    async def stop(self) -> None:
        for task in [*self._tasks, *self._relisting.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._relisting.values(), return_exceptions=True)
        self.queue.close()
        await self.api.close()
        if self._watches is not None:
            await self._watches.close()

    def _on_leadership(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            if self.reconciler.ports is not None:
                self.reconciler.ports.reset()  # another leader may have given ports meanwhile
            if self.settings.scale_to_zero.activator_service:
                self.activator = UNREAD  # a standby's reading is stale: read it before touching slices
                self._report_activator()
                task = asyncio.create_task(self._read_activator(requeue=True), name="activator")
                self._tasks.append(task)
                task.add_done_callback(self._forget_task)  # leadership may flap: keep no finished reads
            for key in self.store.keys("Chute"):
                self.queue.add(key, background=True)

    async def _read_activator(self, requeue: bool = False) -> None:
        """Read the activator's ready pods (kept as they were when the read fails); ``requeue``:
        then queue the Chutes with minInstances 0, whose slices waited for it."""
        if not self.settings.scale_to_zero.activator_service:
            return
        namespace, _, service = self.settings.scale_to_zero.activator_service.partition("/")
        try:
            self.activator = activator_from_slices(await self.api.endpoint_slices(namespace, service))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("reading the activator's endpoints: %s", error_message(error))
            return
        finally:
            self._report_activator()
        if self.activator is None:
            log.warning("the activator %s has no ready pod: it is out of every Chute at zero", service)
        if requeue:
            self._queue_scale_to_zero()

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    def _report_activator(self) -> None:
        """``chute_operator_activator_ready_pods``: -1 while not read, else its ready pods."""
        reading = self.activator
        if self.settings.scale_to_zero.activator_service:
            ready = (
                -1 if reading is UNREAD else len(reading.addresses) if isinstance(reading, Activator) else 0
            )
            self.metrics.activator_ready_pods.set(ready)

    def _queue_scale_to_zero(self, asleep_too: bool = True) -> None:
        """Queue the Chutes with minInstances 0. Without ``asleep_too``, only those awake: one at zero
        changes only on an event (a wake request or spec change on the Chute, its Deployment) or a new
        activator reading, which queues them all; a periodic check of 4,500 sleeping Chutes every 5 s
        was 900 reconciles a second that each decided to stay."""
        for key in self.store.keys("Chute"):
            chute = self.store.get("Chute", key) or {}
            if (chute.get("spec") or {}).get("minInstances") != 0:
                continue
            if asleep_too or (
                asleep_since(self.store.get("Deployment", key)) is None and self._may_sleep(key, chute)
            ):
                self.queue.add(key, background=True)

    def _may_sleep(self, key: Key, chute: dict[str, Any]) -> bool:
        """Whether the readings say every pod of an awake Chute has been idle for its window: only then
        can its reconcile decide to sleep (any other change comes with an event). At 1000 awake Chutes
        the check reconciled 200 a second that each decided to stay."""
        window = (chute.get("spec") or {}).get("shutdownAfterSeconds")
        idle = idle_for(self.store.children("Pod", key), self.idle_seconds)
        return idle is not None and (not isinstance(window, int | float) or idle >= window)

    async def _resync(self) -> None:
        """Relist and re-queue every Chute now and then: catches anything a missed event would hide."""
        while True:
            await asyncio.sleep(self.settings.watching.resync_seconds)
            try:
                await self.relist()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("relisting failed (%s); reconciling from the store", error_message(error))
                for key in self.store.keys("Chute"):
                    self.queue.add(key, background=True)

    async def _watch_optional_apis(self) -> None:
        """Look again for each optional API (ServiceMonitor, an exposed kind) a Chute asked for: when
        a missing one appears, reconcile everything; when one goes (its CRD deleted; read so twice in a
        row, since an API server replica that just started may not serve it yet), relist its kind.
        kopf stops watching a kind whose CRD is deleted, and may stop before the DELETED events of its
        objects arrive: the store would keep them and the Chutes would say they have them."""
        probe = self.reconciler.apis
        while True:
            await asyncio.sleep(self.settings.watching.monitoring_recheck_seconds)
            if not probe.available or not self.is_leader():
                continue
            for kind, was_served in list(probe.available.items()):
                try:
                    if not was_served:
                        if await probe.refresh(kind):
                            log.info("the %s API appeared: reconciling every Chute", kind)
                            for key in self.store.keys("Chute"):
                                self.queue.add(key, background=True)
                    elif await self.api.kind_served(kind):
                        self._unserved_once.discard(kind)
                    elif kind not in self._unserved_once:
                        self._unserved_once.add(kind)  # one read (an API server not synced yet): again
                    else:
                        self._unserved_once.discard(kind)
                        probe.available[kind] = False
                        log.info("the %s API went away: forgetting its objects", kind)
                        await self.relist_kind(kind, None)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("checking for the %s API: %s", kind, error_message(error))

    async def _scale_to_zero(self) -> None:
        """Read the activator's ready pods and re-check Chutes with minInstances 0 for idleness."""
        while True:
            await asyncio.sleep(self.settings.scale_to_zero.check_seconds)
            if not self.is_leader():
                continue
            before = self.activator
            await self._read_activator()
            self._queue_scale_to_zero(asleep_too=self.activator != before)

    async def _work(self) -> None:
        await self._synced.wait()
        while True:
            key = await self.queue.get()
            try:
                await self._reconcile(key)  # type: ignore[arg-type]
            finally:
                self.queue.done(key)
                self.metrics.queue_depth.set(len(self.queue))
            # A reconcile that changes nothing awaits nothing, and a queue that is not empty hands out
            # the next key without suspending: without this, one worker would run every queued reconcile
            # in one go while the watch streams (kopf, on this same event loop) go unread.
            await asyncio.sleep(0)

    async def _reconcile(self, key: Key) -> None:
        if not self.is_leader():
            return
        started = time.perf_counter()
        try:
            again = await self.reconciler.reconcile(key)
        except NotLeader:
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            cause = error.__cause__ if isinstance(error, RetryLater) else error
            if cause is not None:  # (a RetryLater without a cause made no failed API call)
                self.metrics.api_errors.labels(str(error_code(cause) or 0)).inc()
            self.metrics.reconciles.labels("error").inc()
            delay = self.queue.retry(key, throttled_for(cause) if cause is not None else None)
            if isinstance(error, RetryLater) and error.again is not None:
                self.queue.add_after(key, error.again)  # the earlier of the two wins
                delay = min(delay, error.again)
            log.warning("reconcile %s/%s failed (%s), retrying in %.0fs", *key, error_message(error), delay)
            return
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)
        self.queue.forget(key)
        if again is not None:
            self.queue.add_after(key, again)
        self.metrics.reconciles.labels("success").inc()

    def readiness(self) -> Iterator[ChuteReadiness]:
        """Every known Chute's Ready condition (for the metrics, at scrape time)."""
        for namespace, name in self.store.keys("Chute"):
            chute = self.store.get("Chute", (namespace, name)) or {}
            conditions = (chute.get("status") or {}).get("conditions") or []
            ready = find(conditions, READY) or {}
            sidecar = find(conditions, SIDECAR_CURRENT) or {}
            yield ChuteReadiness(
                namespace,
                name,
                ready.get("status", "Unknown"),
                ready.get("reason", "Unknown"),
                sidecar_behind=sidecar.get("status") == "False",
            )
