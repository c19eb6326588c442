"""One env-driven settings object for the operator (CHUTE_OPERATOR_*)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from chute_operator.wiring import (
    DEFAULT_SIDECAR_IMAGE,
    KUBE_DNS,
    NAMESPACE_NAME_LABEL,
    PROMETHEUS,
    PeerSelector,
)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CHUTE_OPERATOR_{name}", default)


def labels_text(labels: Mapping[str, str]) -> str:
    """``{"a": "1", "b": "2"}`` as ``a=1,b=2``."""
    return ",".join(f"{key}={value}" for key, value in dict(labels).items())


def parse_labels(name: str, text: str) -> dict[str, str]:
    """``a=1,b=2`` as a dict; ValueError naming the variable for anything else."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(
                f"CHUTE_OPERATOR_{name}: {item!r} is not key=value (a comma-separated label list)"
            )
        labels[key.strip()] = value.strip()
    return labels


def _flag(name: str, default: bool) -> bool:
    return _env(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Operator settings; every field has an env var CHUTE_OPERATOR_<FIELD_NAME_UPPER>."""

    field_manager: str = "chute-operator"
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    gpu_catalog: str | None = None
    cluster_domain: str = "cluster.local"
    namespaces: tuple[str, ...] = ()
    """Watched namespaces; empty means all."""
    leader_election: bool = True
    lease_name: str = "chute-operator"
    lease_namespace: str = "default"
    lease_duration_seconds: float = 15.0
    lease_renew_seconds: float = 2.0
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    workers: int = 16
    child_event_delay_seconds: float = 0.5
    """A Chute is reconciled this long after the first event of one of its children or pods (the events
    meanwhile wait with it): a pod's start is a burst of events, one reconcile sees them all. A
    Chute's own events are not delayed."""
    status_wait_seconds: float = 5.0
    """After applying a Chute's Deployment, its status waits this long at most for the Deployment's
    controller to observe it (its status then says what became of the change, not what was there
    before), and is written once instead of twice (see reconcile.Reconciler._status_wait)."""
    resync_seconds: float = 600.0
    monitoring_recheck_seconds: float = 60.0
    """How often to look again for the ServiceMonitor API while it is missing."""
    metrics_port: int = 8081
    health_port: int = 8080
    log_format: str = "json"
    log_level: str = "INFO"
    watch_server_timeout: int = 300
    watch_client_timeout: int = 330
    hpa_scale_to_zero: bool = False
    hpa_exact_scale_up: bool = True
    """HPA scale-up tolerance 0 (needs Kubernetes >= 1.35); false on older clusters."""
    annotation_prefix: str = "chutes.ai"
    """Prefix of kopf's own annotations, should it ever store progress."""
    metrics_api: bool = False
    """Serve custom.metrics.k8s.io (the HPA's chute_utilization_ratio) over HTTPS; needs the cert files."""
    metrics_api_port: int = 6443
    metrics_api_bind_address: str = "0.0.0.0"
    metrics_api_cert_file: str = "/var/run/secrets/chute-operator/metrics-api/tls.crt"
    metrics_api_key_file: str = "/var/run/secrets/chute-operator/metrics-api/tls.key"
    metrics_api_scrape_interval_seconds: float = 2.0
    metrics_api_scrape_timeout_seconds: float = 1.0
    metrics_api_scrape_concurrency: int = 16
    metrics_api_max_age_seconds: float = 10.0
    """A sidecar reading older than this is dropped (the pod counts as missing for the HPA)."""
    metrics_api_test_only_sidecar_addresses: str = ""
    """TEST ONLY: a JSON file {"namespace/pod": "127.0.0.1:PORT"} read each round; loopback only.
    Lets tests read real sidecar processes on loopback for pods on simulated nodes."""

    activator_service: str = ""
    """``namespace/name`` of the activator's Service (the chart sets it): scale to zero is on only
    with it, and only while the activator has a ready pod."""
    scale_to_zero_check_seconds: float = 5.0
    """How often Chutes with minInstances 0 are checked for idleness (and the activator's pods read)."""

    dns_namespace_selector: str = labels_text(KUBE_DNS.namespace_labels)
    """Labels (``k=v,k=v``) of the namespace of the cluster's DNS pods: a Chute's only DNS servers."""
    dns_pod_selector: str = labels_text(KUBE_DNS.pod_labels)
    """Labels of the cluster's DNS pods."""
    prometheus_namespace_selector: str = labels_text(PROMETHEUS.namespace_labels)
    """Labels of the namespace Prometheus runs in (empty: any): it alone reaches a Chute's metrics port."""
    prometheus_pod_selector: str = labels_text(PROMETHEUS.pod_labels)
    """Labels of the Prometheus pods (empty: every pod of those namespaces)."""
    operator_namespace: str = "default"
    """Namespace of the operator's own pods (env POD_NAMESPACE in the chart)."""
    operator_pod_selector: str = "app.kubernetes.io/name=chute-operator"
    """Labels of the operator's pods: with metrics_api they may read every Chute's metrics port."""

    def dns_peer(self) -> PeerSelector:
        """The only pods a Chute may query for DNS (without allowExternalEgress)."""
        return PeerSelector(
            parse_labels("DNS_NAMESPACE_SELECTOR", self.dns_namespace_selector),
            parse_labels("DNS_POD_SELECTOR", self.dns_pod_selector),
        )

    def metrics_readers(self) -> tuple[PeerSelector, ...]:
        """Who may reach a Chute's metrics port: Prometheus, and the operator if it serves the metrics API."""
        prometheus = PeerSelector(
            parse_labels("PROMETHEUS_NAMESPACE_SELECTOR", self.prometheus_namespace_selector),
            parse_labels("PROMETHEUS_POD_SELECTOR", self.prometheus_pod_selector),
        )
        if not self.metrics_api:
            return (prometheus,)
        operator = PeerSelector(
            {NAMESPACE_NAME_LABEL: self.operator_namespace},
            parse_labels("OPERATOR_POD_SELECTOR", self.operator_pod_selector),
        )
        return (prometheus, operator)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment; unset variables keep the defaults above."""
        default = cls()
        namespaces = tuple(n.strip() for n in _env("NAMESPACES", "").split(",") if n.strip())
        settings = cls(
            dns_namespace_selector=_env("DNS_NAMESPACE_SELECTOR", default.dns_namespace_selector),
            dns_pod_selector=_env("DNS_POD_SELECTOR", default.dns_pod_selector),
            prometheus_namespace_selector=_env(
                "PROMETHEUS_NAMESPACE_SELECTOR", default.prometheus_namespace_selector
            ),
            prometheus_pod_selector=_env("PROMETHEUS_POD_SELECTOR", default.prometheus_pod_selector),
            operator_namespace=_env("OPERATOR_NAMESPACE", os.environ.get("POD_NAMESPACE", "default")),
            operator_pod_selector=_env("OPERATOR_POD_SELECTOR", default.operator_pod_selector),
            field_manager=_env("FIELD_MANAGER", default.field_manager),
            sidecar_image=_env("SIDECAR_IMAGE", default.sidecar_image),
            gpu_catalog=_env("GPU_CATALOG", "") or None,
            cluster_domain=_env("CLUSTER_DOMAIN", default.cluster_domain),
            namespaces=namespaces,
            leader_election=_flag("LEADER_ELECTION", default.leader_election),
            lease_name=_env("LEASE_NAME", default.lease_name),
            lease_namespace=_env("LEASE_NAMESPACE", os.environ.get("POD_NAMESPACE", default.lease_namespace)),
            lease_duration_seconds=float(_env("LEASE_DURATION_SECONDS", str(default.lease_duration_seconds))),
            lease_renew_seconds=float(_env("LEASE_RENEW_SECONDS", str(default.lease_renew_seconds))),
            identity=_env("IDENTITY", os.environ.get("POD_NAME", default.identity)),
            workers=int(_env("WORKERS", str(default.workers))),
            child_event_delay_seconds=float(
                _env("CHILD_EVENT_DELAY_SECONDS", str(default.child_event_delay_seconds))
            ),
            status_wait_seconds=float(_env("STATUS_WAIT_SECONDS", str(default.status_wait_seconds))),
            resync_seconds=float(_env("RESYNC_SECONDS", str(default.resync_seconds))),
            monitoring_recheck_seconds=float(
                _env("MONITORING_RECHECK_SECONDS", str(default.monitoring_recheck_seconds))
            ),
            metrics_port=int(_env("METRICS_PORT", str(default.metrics_port))),
            health_port=int(_env("HEALTH_PORT", str(default.health_port))),
            log_format=_env("LOG_FORMAT", default.log_format),
            log_level=_env("LOG_LEVEL", default.log_level).upper(),
            watch_server_timeout=int(_env("WATCH_SERVER_TIMEOUT", str(default.watch_server_timeout))),
            watch_client_timeout=int(_env("WATCH_CLIENT_TIMEOUT", str(default.watch_client_timeout))),
            hpa_scale_to_zero=_flag("HPA_SCALE_TO_ZERO", default.hpa_scale_to_zero),
            hpa_exact_scale_up=_flag("HPA_EXACT_SCALE_UP", default.hpa_exact_scale_up),
            annotation_prefix=_env("ANNOTATION_PREFIX", default.annotation_prefix),
            metrics_api=_flag("METRICS_API", default.metrics_api),
            metrics_api_port=int(_env("METRICS_API_PORT", str(default.metrics_api_port))),
            metrics_api_bind_address=_env("METRICS_API_BIND_ADDRESS", default.metrics_api_bind_address),
            metrics_api_cert_file=_env("METRICS_API_CERT_FILE", default.metrics_api_cert_file),
            metrics_api_key_file=_env("METRICS_API_KEY_FILE", default.metrics_api_key_file),
            metrics_api_scrape_interval_seconds=float(
                _env("METRICS_API_SCRAPE_INTERVAL_SECONDS", str(default.metrics_api_scrape_interval_seconds))
            ),
            metrics_api_scrape_timeout_seconds=float(
                _env("METRICS_API_SCRAPE_TIMEOUT_SECONDS", str(default.metrics_api_scrape_timeout_seconds))
            ),
            metrics_api_scrape_concurrency=int(
                _env("METRICS_API_SCRAPE_CONCURRENCY", str(default.metrics_api_scrape_concurrency))
            ),
            metrics_api_max_age_seconds=float(
                _env("METRICS_API_MAX_AGE_SECONDS", str(default.metrics_api_max_age_seconds))
            ),
            metrics_api_test_only_sidecar_addresses=_env("METRICS_API_TEST_ONLY_SIDECAR_ADDRESSES", ""),
            activator_service=_env("ACTIVATOR_SERVICE", default.activator_service),
            scale_to_zero_check_seconds=float(
                _env("SCALE_TO_ZERO_CHECK_SECONDS", str(default.scale_to_zero_check_seconds))
            ),
        )
        settings.dns_peer()  # a malformed selector stops the operator at start-up, naming the variable
        settings.metrics_readers()
        return settings
