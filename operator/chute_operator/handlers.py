"""kopf wiring: start the controller, and hand it kopf's events of the optional kinds. Nothing else.

The controller's own informers (informer.py) watch the Chutes and the children every cluster serves;
kopf watches the kinds a cluster may not serve (CRDs: ServiceMonitor, InferencePool, HTTPRoute; and
Ingress), whose watches it starts and stops as their APIs come and go.

The event handlers are coroutines: kopf runs a plain function in a thread pool, and the store and
the work queue are the event loop's alone (a key queued from another thread woke no worker until
something else woke the loop: seconds from a spec change to its reconcile).

Only event-watching handlers are registered: kopf writes nothing to the objects (no finalizers,
no diff-base annotations), so an unchanged Chute costs zero writes.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from chute_operator import kopf_memory, rescan
from chute_operator.controller import Controller
from chute_operator.discover import learn_from
from chute_operator.drainkey import load_drain_key
from chute_operator.gpu_profile_setup import choose_profile
from chute_operator.gpu_profiles import load_profiles
from chute_operator.gpus import Catalog, load_catalog
from chute_operator.kube import LIST_PAGE, WATCHED_KINDS
from chute_operator.login import login  # noqa: F401  (registers the login activity)
from chute_operator.metrics import OperatorMetrics
from chute_operator.relisting import Listener, install, listen, unlisten
from chute_operator.settings import Settings
from chute_operator.transport import ApiTransport
from chute_shared.cluster import MANAGED_BY


class NoDiffBase(kopf.DiffBaseStorage):
    """No essence for kopf to diff: with event-watching handlers only, nothing reads it.

    kopf builds the essence of every object on every watch event (a deep copy of the whole object,
    then of its labels and annotations, and again when clearing its progress marks) whether or not a
    change handler exists: 9% of the operator's samples while 1000 Chutes came up (a py-spy profile,
    docs/benchmarks/operator.md). Change handlers (``on.create``, ``on.update``...) would need it.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


KOPF_IDLE_SECONDS = 0.5
"""How long kopf keeps an idle per-object worker (and the object's last event with it)."""
MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"
CHILDREN = {
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
    "InferencePool": ("inference.networking.k8s.io", "v1", "inferencepools"),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "Ingress": ("networking.k8s.io", "v1", "ingresses"),
}
"""The children kopf watches: the optional kinds (kube.OPTIONAL_KINDS)."""
INFORMED = tuple(kind for kind in WATCHED_KINDS if kind not in CHILDREN)
"""The kinds the controller's own informers watch: the Chutes, and the children every cluster serves."""
WATCH_CONNECTIONS = 0
"""The watches' own connections: no limit (each watch holds one open; the reconcile workers' calls
must not wait behind them)."""

KINDS = {(group, plural): kind for kind, (group, _, plural) in CHILDREN.items()}
"""The store's kind of each resource kopf watches, by (API group, plural)."""
HOOKED = install()
"""Whether kopf tells of its relistings (relisting.py): installed before kopf starts its watches."""
KOPF_MEMORY_EPHEMERAL = kopf_memory.install()
"""Whether kopf keeps no per-object memory (kopf_memory.py)."""
RESCAN_GUARDED = rescan.install()
"""Whether a failed read of discovery after a CRD event leaves kopf running (rescan.py)."""


def _configuration(memo: kopf.Memo) -> tuple[Settings, Catalog]:
    """The settings and catalog `chute-operator run` read; without it (``kopf run``), read here once."""
    config: Settings | None = memo.get("settings")
    if config is None:
        config = Settings.from_env()
    catalog: Catalog | None = memo.get("catalog")
    if catalog is None:
        catalog = load_catalog(config.render.gpu_catalog)
    return config, catalog


def relist_listener(controller: Controller) -> Listener:
    """What to do when kopf lists a resource again: relist the store's kind of it (others: nothing)."""

    def relisted(group: str, plural: str, namespace: str | None) -> None:
        kind = KINDS.get((group, plural))
        if kind is not None:
            controller.relist_soon(kind, namespace)

    return relisted


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config, catalog = _configuration(memo)
    settings.posting.enabled = False  # the controller records its own, deliberate events
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=config.reconciling.annotation_prefix
    )
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = config.watching.server_timeout
    settings.watching.client_timeout = config.watching.client_timeout
    settings.watching.chunk_size = LIST_PAGE  # kopf's own listings in pages: one page's objects in memory
    # kopf runs one worker task per object, which holds the object's last event (the whole object as
    # the API sent it) until it has been idle this long (kopf's default: 5 s). At a cold start every
    # object arrives at once; at 1000 Chutes, 0.5 s took the peak RSS of a restart from 246 to 212 MB
    # (benchmarks/results/operator-restart-memory-1000.json). The handlers only store and queue.
    settings.queueing.idle_timeout = KOPF_IDLE_SECONDS
    settings.networking.enforce_retry_after = True
    for group, version, plural in CHILDREN.values():
        settings.watching.label_selectors[(group or "v1", version, plural) if group else ("v1", plural)] = (
            MANAGED
        )
    metrics: OperatorMetrics | None = memo.get("metrics")
    if metrics is None:  # not started by `chute-operator run`, which serves them before kopf starts
        metrics = OperatorMetrics()
        metrics.serve(config.process.metrics_port)
    client = AsyncClient(config=KubeConfig.from_env(), field_manager=config.reconciling.field_manager)
    # Before the first render: a failure (no RBAC for the Secret, a malformed key) stops the start here
    # and kopf retries it; rendering without the key would roll every Chute's pods, twice.
    try:
        drain_key = await load_drain_key(client, *config.drain_key_secret())
    except Exception:
        await client.close()
        raise
    try:
        pick = await choose_profile(
            client, config.render.gpu_profile, load_profiles(config.render.gpu_catalog), catalog.values()
        )
    except Exception:
        await client.close()
        raise
    metrics.report_gpu_profile(pick.profile.name, pick.source, pick.matched)
    server = await learn_from(client, config)  # what the API server accepts: rendered to match
    controller = Controller(config, client, metrics, catalog, drain_key, pick, server)
    controller.watch(INFORMED, ApiTransport.of(client, WATCH_CONNECTIONS))
    controller.start()
    memo["controller"] = controller
    memo["relisted"] = relisted = relist_listener(controller)
    listen(relisted)
    if not RESCAN_GUARDED:
        logging.getLogger(__name__).warning(
            "this kopf's CRD observer cannot be guarded: a failed read of discovery stops the operator"
        )
    if not HOOKED:
        logging.getLogger(__name__).warning(
            "this kopf cannot tell when it relists a kind: deletions missed in a watch gap are "
            "forgotten at the next resync only (CHUTE_OPERATOR_RESYNC_SECONDS)"
        )
    if config.metrics_api.enabled:
        from chute_operator.metricsapi.service import MetricsApiService

        metrics_api = MetricsApiService(
            config.metrics_api,
            client,
            controller.store,
            metrics.registry,
            namespace=config.network.operator_namespace,
            cluster_domain=config.render.cluster_domain,
            is_leader=controller.is_leader,
            synced=lambda: controller.listed("Pod"),
        )
        try:
            await metrics_api.start()
        except OSError as error:  # unreadable certificate files, port taken: HPAs see no metric
            logging.getLogger(__name__).error("custom metrics API not served: %s", error)
        else:
            memo["metrics_api"] = metrics_api
            controller.idle_seconds = metrics_api.idle_seconds
            controller.confirm_idle = metrics_api.confirm_idle


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    metrics_api = memo.get("metrics_api")
    if metrics_api is not None:
        await metrics_api.stop()
    if memo.get("relisted") is not None:
        unlisten(memo["relisted"])
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()


@kopf.on.probe(id="leader")
def leader(memo: kopf.Memo, **_: Any) -> bool:
    controller: Controller | None = memo.get("controller")
    return controller is not None and controller.is_leader()


def _watch_child(kind: str, group: str, version: str, plural: str) -> None:
    resource = (f"{group}/{version}" if group else version, plural)

    @kopf.on.event(*resource, labels={"app.kubernetes.io/managed-by": MANAGED_BY}, id=f"child-{kind}")
    async def child_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo["controller"].observe(kind, event.get("type"), dict(event["object"]))


for _kind, (_group, _version, _plural) in CHILDREN.items():
    _watch_child(_kind, _group, _version, _plural)
