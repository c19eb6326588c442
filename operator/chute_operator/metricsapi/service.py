"""Wiring: the metrics API inside the operator process, fed by the controller's watched pods.

Runs in every replica (not only the leader): whichever replica the Service sends the kube-apiserver to
answers. The leader reads every autoscaled pod each round (its scale-to-zero checks need them); a
standby reads only the Chutes it was asked about lately, and a new one when asked (:mod:`demand`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from lightkube import AsyncClient
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import ConfigMap, Node
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chute_operator.kube import ApiFailure, KubeApi, NotFound, translated
from chute_operator.metricsapi import certs, forwarding
from chute_operator.metricsapi.auth import (
    AUTH_CONFIGMAP_NAME,
    AUTH_CONFIGMAP_NAMESPACE,
    Authorizer,
    FrontProxyConfig,
    parse_auth_configmap,
)
from chute_operator.metricsapi.certkeeper import FIELD_MANAGER, CertificateKeeper
from chute_operator.metricsapi.demand import Demand, scraped, to_read_now
from chute_operator.metricsapi.forwarder import Forwarder
from chute_operator.metricsapi.samples import Samples
from chute_operator.metricsapi.scraper import NodeKinds, Scraper
from chute_operator.metricsapi.selectors import SelectorError, parse_selector
from chute_operator.metricsapi.server import (
    Security,
    ServingCertificate,
    metrics_api_app,
    server_context,
    server_tls,
    trust_front_proxy,
)
from chute_operator.metricsapi.targets import REPLANNED, is_simulated_node
from chute_operator.settings import MetricsApi
from chute_operator.store import Store, chute_of
from chute_shared.cluster import CHUTE_LABEL

log = logging.getLogger(__name__)

AUTH_RELOAD_SECONDS = 300.0
CERTIFICATE_RELOAD_SECONDS = 60.0


def pods_from(store: Store) -> Any:
    """(namespace, selector) -> the watched pods worth filtering: one Chute's by index when the
    selector names the Chute (what the HPA asks), else the namespace's."""

    def pods_in(namespace: str, label_selector: str) -> Iterable[Mapping[str, Any]]:
        try:
            selector = parse_selector(label_selector)
        except SelectorError:
            selector = None
        for requirement in selector.requirements if selector else ():
            if requirement.key == CHUTE_LABEL and requirement.operator == "=":
                return store.children("Pod", (namespace, next(iter(requirement.values))))
        return [pod for key in store.keys("Pod") if key[0] == namespace and (pod := store.get("Pod", key))]

    return pods_in


class ScraperCollector(Collector):
    """The scraper's counts for the operator's /metrics, read at scrape time."""

    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        reads = CounterMetricFamily(
            "chute_operator_metrics_api_sidecar_reads",
            "Reads of sidecars' /_conn_stats by the custom metrics API, by result.",
            labels=["result"],
        )
        for result in ("ok", "failed"):
            reads.add_metric([result], self.scraper.reads[result])
        yield reads
        pods = GaugeMetricFamily(
            "chute_operator_metrics_api_pods",
            "Pods of autoscaled Chutes in the last round: read, or without a reading (skipped or failed).",
            labels=["state"],
        )
        pods.add_metric(["read"], self.scraper.read)
        pods.add_metric(["unread"], len(self.scraper.reasons))
        yield pods


class ForwarderCollector(Collector):
    """The forwarder's counts for the operator's /metrics, read at scrape time."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    def collect(self) -> Iterator[CounterMetricFamily]:
        forwarded = CounterMetricFamily(
            "chute_operator_metrics_api_forwarded",
            "Custom metrics requests forwarded to the adapter behind v1beta1.custom.metrics.k8s.io, "
            "by result (ok, refused by the adapter, failed: no usable answer, busy: refused by the "
            "operator, too many in flight).",
            labels=["result"],
        )
        for result, count in self.forwarder.counts.items():
            forwarded.add_metric([result], count)
        yield forwarded


def autoscaled_pods(store: Store) -> list[dict[str, Any]]:
    """The pods worth reading: those of Chutes that have an HPA (fixed-size Chutes need no metric)."""
    return [
        pod
        for namespace, chute in store.keys("HorizontalPodAutoscaler")
        for pod in store.children("Pod", (namespace, chute))
    ]


def autoscaled_pod(store: Store, key: tuple[str, str]) -> dict[str, Any] | None:
    """One of :func:`autoscaled_pods` by key, looked up, not scanned (a sleep's confirming read)."""
    pod = store.get("Pod", key)
    chute = chute_of(pod) if pod is not None else None
    return pod if chute and store.get("HorizontalPodAutoscaler", (key[0], chute)) is not None else None


async def read_front_proxy_config(client: AsyncClient) -> FrontProxyConfig:
    configmap = await client.get(ConfigMap, AUTH_CONFIGMAP_NAME, namespace=AUTH_CONFIGMAP_NAMESPACE)
    return parse_auth_configmap(configmap.data or {})


@dataclass
class MetricsApiService:
    """The scraper and the HTTPS server; :meth:`start` then :meth:`stop`."""

    settings: MetricsApi
    client: AsyncClient
    store: Store
    registry: CollectorRegistry | None = None
    """Where the scraper's counts are exported (the operator's /metrics)."""
    namespace: str = "default"
    """The operator's namespace: its Service's and its certificate's Secret's."""
    cluster_domain: str = "cluster.local"
    is_leader: Callable[[], bool] = lambda: True
    """Whether this replica leads (renews the certificate and keeps the APIService's caBundle)."""
    synced: Callable[[], bool] = lambda: True
    """Whether the store holds every watched pod, its first listing (until then a Chute metric is
    answered 503)."""

    def __post_init__(self) -> None:
        s = self.settings
        self.samples = Samples(max_age=s.max_age_seconds)
        self.nodes = NodeKinds(self._node, is_simulated_node)
        self.demand = Demand()
        self.scraper = Scraper(
            lambda: scraped(autoscaled_pods(self.store), self.is_leader(), self.demand.wanted()),
            self.nodes,
            self.samples,
            interval=s.scrape_interval_seconds,
            timeout=s.scrape_timeout_seconds,
            concurrency=s.scrape_concurrency,
            test_only_address_file=s.test_only_sidecar_addresses or None,
            pod_of=lambda key: autoscaled_pod(self.store, key),
        )
        if self.registry is not None:
            self.registry.register(ScraperCollector(self.scraper))
        self.front_proxy: FrontProxyConfig | None = None
        self.authorizer = Authorizer(self._review)
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.keeper: CertificateKeeper | None = None
        self._api: KubeApi | None = None
        self._cert_dir: Path | None = None
        self.forwarder: Forwarder | None = None
        if s.forward_to_v1beta1:
            self.forwarder = Forwarder(self._kube_api(), (self.namespace, s.service))
            if self.registry is not None:
                self.registry.register(ForwarderCollector(self.forwarder))

    async def _node(self, name: str) -> dict[str, Any] | None:
        try:
            async with translated():
                node = await self.client.get(Node, name)
        except NotFound:
            return None
        found: dict[str, Any] = node.to_dict()
        return found

    async def _review(self, spec: dict[str, Any]) -> dict[str, Any]:
        review = SubjectAccessReview.from_dict(
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        )
        created = await self.client.create(review)  # type: ignore[call-overload]
        status: dict[str, Any] = created.to_dict().get("status") or {}
        return status

    async def start(self) -> None:
        """Serve at once; the front proxy's CA and header names are read in the background (until
        then every API request gets 401, so a cluster that hides the ConfigMap never blocks start-up)."""
        s = self.settings
        if s.cert_secret:
            tls = server_context()
            self.keeper = self._keeper(tls)
            try:
                await self.keeper.sync()
            except (ApiFailure, OSError, ssl.SSLError, certs.CertificateError) as error:
                log.warning(
                    "custom metrics API: no serving certificate yet (%s); TLS handshakes fail until "
                    "Secret %s is read",
                    error,
                    self.keeper.where,
                )
            keep_certificate = self._keep_secret(self.keeper)
        else:
            tls = server_tls(s.cert_file, s.key_file, "")
            keep_certificate = self._keep_certificate(ServingCertificate(tls, s.cert_file, s.key_file))
        app = metrics_api_app(
            self._pods_in,
            self.samples,
            lambda: self.scraper.reasons,
            max(1, round(s.scrape_interval_seconds)),
            Security(lambda: self.front_proxy, self.authorizer),
            self.forwarder.forward if self.forwarder is not None else None,
            self._refresh,
            ready=self.synced,
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.bind_address, s.port, ssl_context=tls)
        await site.start()
        self._tasks = [
            asyncio.create_task(self.scraper.run(), name="metrics-scraper"),
            asyncio.create_task(self._keep_front_proxy(tls), name="metrics-front-proxy"),
            asyncio.create_task(keep_certificate, name="metrics-certificate"),
            asyncio.create_task(self._warn_of_rival(), name="metrics-rival"),
        ]
        log.info("custom metrics API serving on %s:%d", s.bind_address, s.port)

    def idle_seconds(self, namespace: str, pod: str) -> float | None:
        """How long the pod's sidecar has served nothing, from a fresh reading (None: busy or unknown)."""
        now = time.monotonic()
        sample = self.samples.fresh((namespace, pod), now)
        if sample is None or sample.idle_seconds is None:
            return None
        return sample.idle_seconds + max(0.0, now - sample.read_at)

    async def confirm_idle(self, namespace: str, pod: str) -> float | None:
        """How long the pod's sidecar has served nothing, read from it now (None: busy or unread)."""
        return await self.scraper.idle_now(namespace, pod)

    async def _refresh(self, pods: list[Mapping[str, Any]]) -> None:
        """Before a pod metric is answered: remember its Chutes, and read the pods :func:`to_read_now`
        names (a standby: those it has no fresh reading of; the leader: those no round has tried)."""
        self.demand.note(pods)
        stale = to_read_now(
            pods, self.samples, self.scraper.reasons, self.is_leader(), time.monotonic(), REPLANNED
        )
        if stale:
            await self.scraper.read_now(stale)

    def _pods_in(self, namespace: str, selector: str) -> Iterable[Mapping[str, Any]]:
        found: Iterable[Mapping[str, Any]] = pods_from(self.store)(namespace, selector)
        return found

    def _kube_api(self) -> KubeApi:
        """The metrics API's own client (its APIService reads and writes, forwarded requests)."""
        if self._api is None:
            self._api = KubeApi(self.client, FIELD_MANAGER, FIELD_MANAGER, FIELD_MANAGER)
        return self._api

    async def _warn_of_rival(self) -> None:
        """Once at start: warn when ``v1beta2.custom.metrics.k8s.io`` names another adapter's Service
        (the Chutes' HPAs then never reach the operator; it never writes that APIService)."""
        own = (self.namespace, self.settings.service)
        try:
            found = await self._kube_api().api_service(forwarding.OWN_API_SERVICE)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.info("custom metrics API: APIService %s not read: %s", forwarding.OWN_API_SERVICE, error)
            return
        where = forwarding.rival(found, own)
        if where is not None:
            log.warning("custom metrics API: %s", forwarding.rival_message(where, own))

    def _keeper(self, tls: ssl.SSLContext) -> CertificateKeeper:
        """The keeper of the certificate in Secret ``cert_secret``, serving it through ``tls``."""
        s = self.settings
        self._cert_dir = Path(tempfile.mkdtemp(prefix="chute-operator-metrics-api-"))
        return CertificateKeeper(
            api=self._kube_api(),
            namespace=self.namespace,
            secret=s.cert_secret,
            service=s.service,
            names=certs.service_names(s.service, self.namespace, self.cluster_domain),
            validity=timedelta(days=s.cert_validity_days),
            renew_before=timedelta(days=s.cert_renew_before_days),
            context=tls,
            directory=self._cert_dir,
            is_leader=self.is_leader,
        )

    async def _keep_secret(self, keeper: CertificateKeeper) -> None:
        """Read the certificate's Secret every ``cert_check_seconds`` (every 5 s at most while nothing is
        served yet): a renewal is served at once, a due one renewed by the leader."""
        interval = self.settings.cert_check_seconds
        while True:
            await asyncio.sleep(interval if keeper.served is not None else min(interval, 5.0))
            try:
                await keeper.sync()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("custom metrics API: certificate in Secret %s: %s; retrying", keeper.where, error)

    async def _keep_certificate(self, certificate: ServingCertificate) -> None:
        """Pick up a renewed serving certificate (the mounted Secret's files change)."""
        certificate.refresh()
        while True:
            await asyncio.sleep(CERTIFICATE_RELOAD_SECONDS)
            try:
                if certificate.refresh():
                    log.info("custom metrics API: serving certificate reloaded")
            except (OSError, ssl.SSLError) as error:
                log.warning("custom metrics API: keeping the old certificate, the new one failed: %s", error)

    async def _keep_front_proxy(self, tls: ssl.SSLContext) -> None:
        """Read the front proxy's configuration (retrying every 5 s), then re-read it every 5 minutes:
        new header names apply at once, a new CA is trusted beside the old one."""
        where = f"{AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME}"
        while True:
            try:
                config = await read_front_proxy_config(self.client)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("reading %s: %s; retrying", where, error)
                await asyncio.sleep(5)
                continue
            if not config.client_ca:
                log.warning("%s has no request-header CA: every metrics API request gets 401", where)
            elif self.front_proxy is None or config.client_ca != self.front_proxy.client_ca:
                trust_front_proxy(tls, config.client_ca)
            self.front_proxy = config
            await asyncio.sleep(AUTH_RELOAD_SECONDS)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self._api is not None:
            await self._api.close()
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
