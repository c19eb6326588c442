"""The operator's settings, grouped by concern (as kopf's ``OperatorSettings``), read once.

Each group reads its fields from ``CHUTE_OPERATOR_*`` variables (chute_operator.environ names them);
``chute-operator run`` builds the settings once, its command line over the environment, and hands
them to the kopf start-up handler, which hands each part on.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, get_type_hints

from chute_operator.capabilities import ASSUMED, ServerCapabilities
from chute_operator.environ import Group, env, names, read, variables
from chute_operator.gpu_profile_pick import ProfilePick
from chute_operator.gpu_profiles import AUTO, BUILTIN, CUSTOM, GFD
from chute_operator.gpus import Catalog
from chute_operator.sidecars import SIDECAR_UPDATE_POLICIES, SidecarPolicy
from chute_operator.weights import DOWNLOAD_DEADLINE_SECONDS, MAX_DEADLINE_SECONDS
from chute_operator.wiring import (
    DEFAULT_SIDECAR_IMAGE,
    KUBE_DNS,
    NAMESPACE_NAME_LABEL,
    PROMETHEUS,
    PeerSelector,
)
from chute_operator.workload import RenderOptions
from chute_shared.ports import ACTIVATOR_CHUTE_PORTS, parse_port_range


def labels_text(labels: Mapping[str, str]) -> str:
    """``{"a": "1", "b": "2"}`` as ``a=1,b=2``."""
    return ",".join(f"{key}={value}" for key, value in dict(labels).items())


def parse_labels(variable: str, text: str) -> dict[str, str]:
    """``a=1,b=2`` as a dict; ValueError naming the ``variable`` for anything else."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"{variable}: {item!r} is not key=value (a comma-separated label list)")
        labels[key.strip()] = value.strip()
    return labels


@dataclass(frozen=True)
class Process:
    """The operator process's own ports and logs."""

    ENV_PREFIX: ClassVar[str] = ""
    metrics_port: int = 8081
    health_port: int = 8080
    log_format: str = "json"
    log_level: str = field(default="INFO", metadata=env(parse=str.upper))


@dataclass(frozen=True)
class Watching:
    """What the operator watches, and how often it lists it again."""

    ENV_PREFIX: ClassVar[str] = "WATCH_"
    namespaces: tuple[str, ...] = field(default=(), metadata=env("NAMESPACES"))
    """Watched namespaces; empty means all."""
    server_timeout: int = 300
    client_timeout: int = 330
    resync_seconds: float = field(default=600.0, metadata=env("RESYNC_SECONDS"))
    monitoring_recheck_seconds: float = field(default=60.0, metadata=env("MONITORING_RECHECK_SECONDS"))
    """How often to look again for a missing optional API (ServiceMonitor, HTTPRoute, Ingress,
    InferencePool) that a Chute asks for."""


@dataclass(frozen=True)
class Reconciling:
    """How Chutes are reconciled, and how the operator's writes are signed."""

    ENV_PREFIX: ClassVar[str] = ""
    workers: int = 16
    child_event_delay_seconds: float = 0.5
    """A Chute is reconciled this long after the first event of one of its children or pods (the events
    meanwhile wait with it): a pod's start is a burst of events, one reconcile sees them all. A
    Chute's own events are not delayed."""
    status_wait_seconds: float = 5.0
    """After applying a Chute's Deployment, its status waits this long at most for the Deployment's
    controller to observe it (its status then says what became of the change, not what was there
    before), and is written once instead of twice (see report.status_wait)."""
    field_manager: str = "chute-operator"
    annotation_prefix: str = "chutes.ai"
    """Prefix of kopf's own annotations, should it ever store progress."""


def _identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Leadership:
    """Leader election through a Lease: only the leader reconciles."""

    ENV_PREFIX: ClassVar[str] = "LEASE_"
    enabled: bool = field(default=True, metadata=env("LEADER_ELECTION"))
    name: str = "chute-operator"
    namespace: str = field(default="default", metadata=env(fallback="POD_NAMESPACE"))
    duration_seconds: float = 15.0
    renew_seconds: float = 2.0
    identity: str = field(default_factory=_identity, metadata=env("IDENTITY", fallback="POD_NAME"))


@dataclass(frozen=True)
class Render:
    """What the rendered children of a Chute hold beside its spec."""

    ENV_PREFIX: ClassVar[str] = ""
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    gpu_catalog: str | None = None
    """A file of GPU types over the built-in catalog (``--gpu-catalog``), and the custom GPU profile."""
    gpu_profile: str = AUTO
    """Which node labels mean a GPU type (docs/gpu-profiles.md): gfd, gke, eks, eks-auto, eks-nodegroup,
    aks, custom (defined in the catalog file), or auto (picked from the nodes at start)."""
    cluster_domain: str = "cluster.local"
    hpa_scale_to_zero: bool = False
    hpa_exact_scale_up: bool = True
    """HPA scale-up tolerance 0 where the API server keeps it (learned at start: Kubernetes >= 1.35 by
    default); false: never (the HPA's 10 %)."""
    drain_key_secret: str = "chute-operator-drain-key"
    """The Secret, in the operator's namespace (``network.operator_namespace``), whose key keys every
    Chute's drain token: read at start, made once when missing (drainkey.py)."""
    sidecar_update_policy: str = "Manual"
    """What a running Chute whose pods have another sidecar image than ``sidecar_image`` gets
    (sidecars.py): ``Manual`` keeps its pods' sidecar until the Chute opts in (annotation
    ``chutes.ai/sidecar-update: "true"``); ``Automatic`` rolls every such Chute to the new one (a
    Chute's ``"false"`` keeps it). New Chutes always get ``sidecar_image``."""
    sidecar_max_concurrent_updates: int = 1
    """At most this many Chutes roll to a new sidecar at once; the next starts only once one of
    them is rolled out (every replica Ready on the new sidecar)."""
    hf_endpoint: str | None = None
    """``HF_ENDPOINT`` of the weights download Jobs (``CHUTE_OPERATOR_HF_ENDPOINT``: a hub mirror);
    unset: the client's default hub (docs/weights.md)."""
    weights_download_deadline_seconds: int = DOWNLOAD_DEADLINE_SECONDS
    """The weights download Jobs' ``activeDeadlineSeconds``
    (``CHUTE_OPERATOR_WEIGHTS_DOWNLOAD_DEADLINE_SECONDS``; docs/weights.md)."""

    def __post_init__(self) -> None:
        if self.gpu_profile not in (AUTO, CUSTOM, *BUILTIN):
            raise ValueError(
                f"CHUTE_OPERATOR_GPU_PROFILE: {self.gpu_profile!r} is not one of "
                + ", ".join((AUTO, *BUILTIN, CUSTOM))
            )
        if self.sidecar_update_policy not in SIDECAR_UPDATE_POLICIES:
            raise ValueError(
                f"CHUTE_OPERATOR_SIDECAR_UPDATE_POLICY: {self.sidecar_update_policy!r} is not one of "
                + ", ".join(SIDECAR_UPDATE_POLICIES)
            )
        if self.sidecar_max_concurrent_updates < 1:
            raise ValueError(
                "CHUTE_OPERATOR_SIDECAR_MAX_CONCURRENT_UPDATES: "
                f"{self.sidecar_max_concurrent_updates} is less than 1"
            )
        if not 1 <= self.weights_download_deadline_seconds <= MAX_DEADLINE_SECONDS:
            raise ValueError(
                "CHUTE_OPERATOR_WEIGHTS_DOWNLOAD_DEADLINE_SECONDS: "
                f"{self.weights_download_deadline_seconds} is not between 1 and {MAX_DEADLINE_SECONDS}"
            )


@dataclass(frozen=True)
class Network:
    """The peers of a Chute's NetworkPolicy: its DNS servers and the readers of its metrics port."""

    ENV_PREFIX: ClassVar[str] = ""
    dns_namespace_selector: str = labels_text(KUBE_DNS.namespace_labels or {})
    """Labels (``k=v,k=v``) of the namespace of the cluster's DNS pods: a Chute's only DNS servers."""
    dns_pod_selector: str = labels_text(KUBE_DNS.pod_labels)
    """Labels of the cluster's DNS pods."""
    prometheus_namespace_selector: str = labels_text(PROMETHEUS.namespace_labels or {})
    """Labels of the namespace Prometheus runs in (empty: any): it alone reaches a Chute's metrics port."""
    prometheus_pod_selector: str = labels_text(PROMETHEUS.pod_labels)
    """Labels of the Prometheus pods (empty: every pod of those namespaces)."""
    operator_namespace: str = field(default="default", metadata=env(fallback="POD_NAMESPACE"))
    """Namespace of the operator's own pods (env POD_NAMESPACE in the chart)."""
    operator_pod_selector: str = "app.kubernetes.io/name=chute-operator"
    """Labels of the operator's pods: with the metrics API they may read every Chute's metrics port."""
    endpoint_picker_pod_selector: str = ""
    """Labels (``k=v,k=v``) of inference gateways' endpoint pickers, admitted to every Chute's metrics
    port (the engine's series, docs/exposing.md). Empty: no picker is admitted."""
    endpoint_picker_namespace_selector: str = ""
    """Labels of the namespaces the pickers run in; empty: the Chute's own namespace (an
    InferencePool names its picker's Service in its own namespace)."""


@dataclass(frozen=True)
class MetricsApi:
    """The custom.metrics.k8s.io server (the HPA's chute_utilization_ratio) and its sidecar scraper."""

    ENV_PREFIX: ClassVar[str] = "METRICS_API_"
    enabled: bool = field(default=False, metadata=env("METRICS_API"))
    """Serve it over HTTPS."""
    port: int = 6443
    bind_address: str = "0.0.0.0"  # nosec B104  # served to the API server through the pod's address
    cert_secret: str = "chute-operator-metrics-api-tls"
    """The Secret, in the operator's namespace (``network.operator_namespace``), where the operator
    keeps the CA and serving certificate it makes, renews and serves, and whose CA it writes to the
    APIService's caBundle (metricsapi/certkeeper.py). Empty: serve ``cert_file`` and ``key_file`` as
    they are (cert-manager's or your own, mounted) and leave the caBundle alone."""
    service: str = "chute-operator-metrics-api"
    """The metrics API's Service in the operator's namespace, which the APIService names: its DNS
    names are the certificate's."""
    cert_validity_days: int = 365
    cert_renew_before_days: int = 30
    """The leader renews the certificate once it has less than this left."""
    cert_check_seconds: float = 60.0
    """How often each replica reads the certificate's Secret again (a renewal is served at once)."""
    cert_file: str = "/var/run/secrets/chute-operator/metrics-api/tls.crt"
    key_file: str = "/var/run/secrets/chute-operator/metrics-api/tls.key"
    """The certificate files served when ``cert_secret`` is empty, loaded again when they change."""
    scrape_interval_seconds: float = 2.0
    scrape_timeout_seconds: float = 1.0
    scrape_concurrency: int = 16
    max_age_seconds: float = 10.0
    """A sidecar reading older than this is dropped (the pod counts as missing for the HPA)."""
    forward_to_v1beta1: bool = True
    """Forward the custom metrics requests the operator does not serve (metrics other than Chutes')
    to the adapter behind APIService ``v1beta1.custom.metrics.k8s.io`` (prometheus-adapter's Helm
    chart registers only that version), through the kube-apiserver: the HPA asks v1beta2, the
    operator's, for every metric (metricsapi/forwarding.py)."""
    test_only_sidecar_addresses: str = ""
    """TEST ONLY: a JSON file {"namespace/pod": "127.0.0.1:PORT"} read each round; loopback only.
    Lets tests read real sidecar processes on loopback for pods on simulated nodes."""

    def __post_init__(self) -> None:
        if not 0 <= self.cert_renew_before_days < self.cert_validity_days:
            raise ValueError(
                "CHUTE_OPERATOR_METRICS_API_CERT_RENEW_BEFORE_DAYS "
                f"({self.cert_renew_before_days}) must be at least 0 and less than "
                f"CHUTE_OPERATOR_METRICS_API_CERT_VALIDITY_DAYS ({self.cert_validity_days})"
            )


@dataclass(frozen=True)
class ScaleToZero:
    """Chutes with minInstances 0, and the activator that holds their requests."""

    ENV_PREFIX: ClassVar[str] = "SCALE_TO_ZERO_"
    activator_service: str = field(default="", metadata=env("ACTIVATOR_SERVICE"))
    """``namespace/name`` of the activator's Service (the chart sets it): scale to zero is on only
    with it, and only while the activator has a ready pod."""
    check_seconds: float = 5.0
    """How often Chutes with minInstances 0 are checked for idleness (and the activator's pods read)."""
    activator_ports: tuple[int, int] = field(
        default=ACTIVATOR_CHUTE_PORTS, metadata=env("ACTIVATOR_PORTS", parse=parse_port_range)
    )
    """``FIRST-LAST``: the activator's ports, one per Chute with minInstances 0 (the activator's
    ``--chute-ports``, the same range): a Chute's requests at zero arrive on its own port."""
    activator_max_wait_seconds: float = field(default=300.0, metadata=env("ACTIVATOR_MAX_WAIT_SECONDS"))
    """The activator's ``--max-wait-seconds`` (the chart sets both from ``activator.maxWaitSeconds``): the
    longest it holds a request for a waking Chute, which the request timeout of a Chute's route adds."""


@dataclass(frozen=True)
class Settings:
    """Operator settings, one group per concern; every field has an env var (:func:`variables_of`)."""

    process: Process = field(default_factory=Process)
    watching: Watching = field(default_factory=Watching)
    reconciling: Reconciling = field(default_factory=Reconciling)
    leadership: Leadership = field(default_factory=Leadership)
    render: Render = field(default_factory=Render)
    network: Network = field(default_factory=Network)
    metrics_api: MetricsApi = field(default_factory=MetricsApi)
    scale_to_zero: ScaleToZero = field(default_factory=ScaleToZero)

    def dns_peer(self) -> PeerSelector:
        """The only pods a Chute may query for DNS (without allowExternalEgress)."""
        return PeerSelector(self._labels("dns_namespace_selector"), self._labels("dns_pod_selector"))

    def metrics_readers(self) -> tuple[PeerSelector, ...]:
        """Who may reach a Chute's metrics port: Prometheus, and the operator if it serves the metrics API."""
        prometheus = PeerSelector(
            self._labels("prometheus_namespace_selector"), self._labels("prometheus_pod_selector")
        )
        if not self.metrics_api.enabled:
            return (prometheus,)
        operator = PeerSelector(
            {NAMESPACE_NAME_LABEL: self.network.operator_namespace}, self._labels("operator_pod_selector")
        )
        return (prometheus, operator)

    def endpoint_pickers(self) -> tuple[PeerSelector, ...]:
        """The endpoint pickers admitted to a Chute's metrics port: none unless their pods are named."""
        pods = self._labels("endpoint_picker_pod_selector")
        if not pods:
            return ()
        namespaces = self._labels("endpoint_picker_namespace_selector") or None
        return (PeerSelector(namespaces, pods),)

    def render_options(
        self,
        catalog: Catalog,
        drain_key: bytes | None = None,
        gpu_profile: ProfilePick | None = None,
        server: ServerCapabilities = ASSUMED,
    ) -> RenderOptions:
        """What every Chute is rendered with: the render group, the network peers, ``catalog``, the
        ``drain_key`` read from the cluster (none: no drain token), the GPU profile picked (none:
        GFD's) and what the API ``server`` accepts."""
        return RenderOptions(
            server=server,
            gpu_profile=gpu_profile.profile if gpu_profile else GFD,
            gpu_profile_note=gpu_profile.note() if gpu_profile else "",
            catalog=catalog,
            sidecar_image=self.render.sidecar_image,
            cluster_domain=self.render.cluster_domain,
            hpa_scale_to_zero=self.render.hpa_scale_to_zero,
            hpa_exact_scale_up=self.render.hpa_exact_scale_up,
            dns=self.dns_peer(),
            metrics_readers=self.metrics_readers(),
            endpoint_pickers=self.endpoint_pickers(),
            drain_key=drain_key,
            activator_hold_seconds=self.scale_to_zero.activator_max_wait_seconds,
            hf_endpoint=self.render.hf_endpoint,
            weights_download_deadline_seconds=self.render.weights_download_deadline_seconds,
        )

    def sidecar_policy(self) -> SidecarPolicy:
        """When running Chutes get a new sidecar image: the policy, and how many at once."""
        return SidecarPolicy(
            self.render.sidecar_image,
            self.render.sidecar_update_policy,
            self.render.sidecar_max_concurrent_updates,
        )

    def drain_key_secret(self) -> tuple[str, str]:
        """Namespace and name of the drain key's Secret: the operator's own namespace."""
        return self.network.operator_namespace, self.render.drain_key_secret

    def _labels(self, name: str) -> dict[str, str]:
        """The network setting ``name`` as labels; ValueError naming its variable."""
        variable = next(env_name for env_name, item in variables(Network) if item.name == name)
        return parse_labels(variable, getattr(self.network, name))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        namespaces: Sequence[str] | None = None,
        all_namespaces: bool = False,
        gpu_catalog: str | None = None,
    ) -> Settings:
        """Settings from ``environ`` (the process's by default), unset variables keeping the defaults
        above; the command line's values (``namespaces``, ``all_namespaces``, ``gpu_catalog``), where
        given, win. A value that cannot be read raises ValueError naming its variable."""
        environ = os.environ if environ is None else environ
        read_groups: dict[str, Any] = {name: read(group, environ) for name, group in groups().items()}
        settings = cls(**read_groups)
        if all_namespaces or namespaces:
            # each -n value read as the variable is (``a,b``: two namespaces), as kopf reads it too
            watched = () if all_namespaces else tuple(n for value in namespaces or () for n in names(value))
            settings = replace(settings, watching=replace(settings.watching, namespaces=watched))
        if gpu_catalog:
            settings = replace(settings, render=replace(settings.render, gpu_catalog=gpu_catalog))
        settings.dns_peer()  # a malformed selector stops the operator at start-up, naming the variable
        settings.metrics_readers()
        settings.endpoint_pickers()
        return settings


def groups() -> dict[str, type[Group]]:
    """Each group of the settings by its field's name (``"metrics_api"``: :class:`MetricsApi`)."""
    hints = get_type_hints(Settings)
    return {item.name: hints[item.name] for item in fields(Settings)}


def variables_of() -> dict[str, str]:
    """Every variable the settings read, to its field (``CHUTE_OPERATOR_WORKERS``: "reconciling.workers")."""
    return {
        name: f"{attribute}.{item.name}"
        for attribute, group in groups().items()
        for name, item in variables(group)
    }
