"""Resolve a Chute into a Workload: template defaults applied, every derived value computed.

Pure: no I/O, no clients. The manifest templates read only the Workload.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, field
from typing import Any

from chute_operator.api import Cache, Chute, ChuteSpec, Cord
from chute_operator.capabilities import ASSUMED, ServerCapabilities, unsupported
from chute_operator.engines import ENGINES, Engine
from chute_operator.expose import resolve_expose, timeouts
from chute_operator.gpu_profiles import GFD, GpuProfile
from chute_operator.gpus import Catalog, GpuType, eligible_gpus
from chute_operator.rollout import RolloutObservation, budget
from chute_operator.weights import DOWNLOAD_DEADLINE_SECONDS, WEIGHTS_VOLUME, WeightsCache, cache_of
from chute_operator.wiring import (
    API_KEY_DIR,
    DEFAULT_SIDECAR_IMAGE,
    DNS_PORTS,
    DRAIN_SECONDS,
    HPA_MAX_STABILIZATION_SECONDS,
    KUBE_DNS,
    METRICS_SERVICE_SUFFIX,
    NAMESPACE_NAME_LABEL,
    PROMETHEUS,
    STARTUP_PROBE_PERIOD_SECONDS,
    PeerSelector,
    child_name,
)
from chute_shared.cluster import CHUTE_LABEL, MANAGED_BY, MODEL_CONTAINER
from chute_shared.limits import MAX_BODY_BYTES, REQUEST_TIMEOUT_SECONDS
from chute_shared.ports import ADMIN_PORT, METRICS_PORT, SIDECAR_PORT
from chute_shared.weights import MODEL_PATH_ENV, WEIGHTS_LABEL, WEIGHTS_MOUNT_PATH


@dataclass(frozen=True)
class RenderOptions:
    """Operator-wide settings that shape every Chute's manifests."""

    catalog: Catalog
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    cluster_domain: str = "cluster.local"
    hpa_scale_to_zero: bool = False
    """Render HPA minReplicas 0 for minInstances 0 (needs the HPAScaleToZero feature gate)."""
    hpa_exact_scale_up: bool = True
    """Render ``behavior.scaleUp.tolerance: 0`` where the server keeps it (``server.hpa_tolerance``):
    scale up as soon as the average exceeds scalingThreshold, as Chutes does, not 10 % beyond it."""
    server: ServerCapabilities = ASSUMED
    """What the API server accepts (learned at start, discover.py); offline: a current server."""
    dns: PeerSelector = KUBE_DNS
    """The only pods a Chute may send DNS queries to (unless it allows external egress)."""
    metrics_readers: tuple[PeerSelector, ...] = (PROMETHEUS,)
    """The only pods that reach a Chute's metrics port (Prometheus; the operator for its metrics API;
    an inference gateway's endpoint picker)."""
    endpoint_pickers: tuple[PeerSelector, ...] = ()
    """Inference gateways' endpoint pickers: admitted to every Chute's metrics port, where the sidecar
    serves the engine's series (``CHUTE_OPERATOR_ENDPOINT_PICKER_*``); none by default."""
    drain_key: bytes | None = field(default=None, repr=False)
    """The operator's drain key (drainkey.py), which keys every Chute's drain token; None offline."""
    gpu_profile: GpuProfile = GFD
    """Which node labels mean a GPU type, and which GPU taints to tolerate (gpu_profiles.py)."""
    gpu_profile_note: str = ""
    """Why this profile (gpu_profile_pick.py): shown in an Unschedulable Chute's message."""
    activator_hold_seconds: float = 300.0
    """The longest the activator holds a request for a Chute at zero (its ``--max-wait-seconds``, the
    chart's ``activator.maxWaitSeconds``): a route's ``timeouts.request`` of such a Chute counts it."""
    hf_endpoint: str | None = None
    """``HF_ENDPOINT`` of the weights download Jobs (a hub mirror); None: the client's default hub."""
    weights_download_deadline_seconds: int = DOWNLOAD_DEADLINE_SECONDS
    """The weights download Jobs' ``activeDeadlineSeconds``."""


@dataclass(frozen=True)
class Workload:
    """Everything the manifest templates need, already decided."""

    name: str
    namespace: str
    owner: dict[str, Any] | None
    labels: dict[str, str]
    selector: dict[str, str]
    pod_labels: dict[str, str]
    pod_annotations: dict[str, str]
    template: str
    image: str
    image_pull_policy: str | None
    image_pull_secrets: list[str]
    command: list[str]
    args: list[str]
    env: list[dict[str, Any]]
    env_from: list[dict[str, Any]]
    port: int
    gpu_count: int
    eligible_gpus: list[str]
    gpu_profile: str
    """The GPU profile and why it was chosen, for status messages."""
    concurrency: int
    health_path: str
    startup_timeout_seconds: int
    startup_failure_threshold: int
    progress_deadline_seconds: int
    max_surge: int
    max_unavailable: int
    cords: list[Cord]
    restrict_to_cords: bool
    request_timeout_seconds: int
    """The Chute's ``requestTimeoutSeconds``: the sidecar's, the activator's, its routes' (route_timeouts)."""
    max_request_body_bytes: int
    engine_metrics_path: str | None
    """The model's own metrics path the sidecar relays on its metrics port (None: none)."""
    replicas: int | None
    autoscaled: bool
    hpa_min_replicas: int
    hpa_max_replicas: int
    scale_to_zero: bool
    """minInstances 0 with an HPA that stops at 1: the operator takes it to zero when idle (zero.py)."""
    shutdown_after_seconds: int
    hpa_target_utilization: str
    scale_down_window_seconds: int
    scale_up_tolerance: str | None
    unsupported: tuple[str, ...]
    """What the spec asks for that the API server cannot honour, one sentence each (capabilities.py)."""
    service: dict[str, Any]
    metrics_service: str | None
    """The headless ClusterIP Service of the metrics port the ServiceMonitor reads when the Chute's
    Service is published outside the cluster (NodePort, LoadBalancer), which then omits that port;
    None: the Chute's ClusterIP Service carries it (or no ServiceMonitor is wanted)."""
    monitoring: dict[str, Any]
    service_monitor: bool
    metrics_readers: list[dict[str, Any]]
    """NetworkPolicy peers admitted to the sidecar's metrics port."""
    egress: list[dict[str, Any]] | None
    """NetworkPolicy egress rules; None when the Chute allows any egress."""
    api_key_secret: dict[str, str] | None
    resources: dict[str, dict[str, Any]]
    shared_memory: str
    cache_volume: dict[str, Any]
    cache_mount_path: str
    affinity: dict[str, Any] | None
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    pod: dict[str, Any]
    termination_grace_period_seconds: int
    sidecar_image: str
    sidecar_args: list[str]
    drain_token: str | None
    url: str
    """The Service's in-cluster URL."""
    http_route: dict[str, Any] | None = None
    """The HTTPRoute's spec (expose.py); None: not asked for."""
    ingress: dict[str, Any] | None = None
    """The Ingress's spec and annotations; None: not asked for."""
    inference_pool: dict[str, Any] | None = None
    """The InferencePool's spec; None: not asked for."""
    external_urls: tuple[tuple[str, str], ...] = ()
    """(kind, URL) of the exposed objects that give an external address, the preferred first."""
    extra_volumes: list[dict[str, Any]] = field(default_factory=list)
    extra_volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    weights: WeightsCache | None = None
    """The shared weights cache the pods mount read-only (spec.model.cache); None: none."""


def labels_for(chute: Chute) -> dict[str, str]:
    """Labels on every child object."""
    return {
        "app.kubernetes.io/name": "chute",
        "app.kubernetes.io/instance": chute.metadata.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "chutes",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        CHUTE_LABEL: chute.metadata.name,
        "chutes.ai/template": chute.spec.template,
    }


def selector_for(name: str) -> dict[str, str]:
    """The pods' selector (immutable on a Deployment, so kept minimal)."""
    return {CHUTE_LABEL: name}


def owner_reference(chute: Chute) -> dict[str, Any] | None:
    """The controller reference children carry (none offline, without a uid)."""
    if not chute.metadata.uid:
        return None
    return {
        "apiVersion": chute.api_version,
        "kind": chute.kind,
        "name": chute.metadata.name,
        "uid": chute.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def drain_token(chute: Chute, key: bytes | None) -> str | None:
    """What the model's preStop hook sends and the sidecar's ``/drainz`` requires: HMAC-SHA256 of the
    Chute's uid under the operator's drain key, so it is stable (no writes on re-render) and cannot be
    computed from the uid alone (every child's ownerReferences show it). Not a secret from who can read
    the pod spec. None without a key or a uid (offline)."""
    if not key or not chute.metadata.uid:
        return None
    return hmac.new(key, f"drain/{chute.metadata.uid}".encode(), hashlib.sha256).hexdigest()[:40]


def _env(chute: Chute, cache_path: str, weights: WeightsCache | None = None) -> list[dict[str, Any]]:
    """``HF_HOME`` on the cache volume, the Chute's own variables, and with a weights cache, the hub
    cache on it and offline mode (they win over the Chute's: the serving pods never reach the hub)."""
    merged: dict[str, dict[str, Any]] = {"HF_HOME": {"name": "HF_HOME", "value": f"{cache_path}/huggingface"}}
    for var in chute.spec.env:
        merged[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    if weights is not None:
        snapshot = (
            f"{weights.hub_cache}/models--{weights.repo.replace('/', '--')}/snapshots/{weights.revision}"
        )
        offline = {
            "HF_HUB_CACHE": weights.hub_cache,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            MODEL_PATH_ENV: snapshot,
        }
        for name, value in offline.items():
            merged.pop(name, None)
            merged[name] = {"name": name, "value": value}
    return list(merged.values())


def _weights_volumes(weights: WeightsCache | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cache's volume, read-only, and its mount in the model container."""
    if weights is None:
        return [], []
    claim = {"claimName": weights.name, "readOnly": True}
    volume = {"name": WEIGHTS_VOLUME, "persistentVolumeClaim": claim}
    mount = {"name": WEIGHTS_VOLUME, "mountPath": WEIGHTS_MOUNT_PATH, "readOnly": True}
    return [volume], [mount]


def _affinity(chute: Chute, terms: list[list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The user's affinity with the GPU terms: each user term once per GPU term (terms are ORed)."""
    affinity = dict(chute.spec.pod.affinity or {})
    if not terms:
        return affinity or None
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    user_terms = [dict(t) for t in required.get("nodeSelectorTerms") or [{}]]
    required["nodeSelectorTerms"] = [
        {**term, "matchExpressions": [*(term.get("matchExpressions") or []), *gpu]}
        for term in user_terms
        for gpu in terms
    ]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    affinity["nodeAffinity"] = node_affinity
    return affinity


def _sidecar_args(w: dict[str, Any], current: bool) -> list[str]:
    """The sidecar's flags. ``current``: the pods get the operator's own sidecar; a Chute that keeps an
    older one (sidecars.py) gets only the flags every sidecar knows. A limit at its default is not
    passed (the sidecar's default is the same): Chutes that leave them alone keep their pod template."""
    args = [
        f"--upstream=http://127.0.0.1:{w['port']}",
        f"--port={SIDECAR_PORT}",
        f"--metrics-port={METRICS_PORT}",
        f"--admin-port={ADMIN_PORT}",
        f"--concurrency={w['concurrency']}",
        f"--health-path={w['health_path']}",
        f"--startup-timeout-seconds={w['startup_timeout_seconds']}",
        f"--drain-seconds={DRAIN_SECONDS}",
        f"--shutdown-timeout-seconds={max(5, w['termination_grace_period_seconds'] - DRAIN_SECONDS - 5)}",
    ]
    if w["request_timeout_seconds"] != REQUEST_TIMEOUT_SECONDS:
        args.append(f"--request-timeout-seconds={w['request_timeout_seconds']}")
    if w["max_request_body_bytes"] != MAX_BODY_BYTES:
        args.append(f"--max-body-bytes={w['max_request_body_bytes']}")
    if w["engine_metrics_path"] and current:
        args.append(f"--engine-metrics-path={w['engine_metrics_path']}")
    args += [f"--cord={cord.method} {cord.path}" for cord in w["cords"]]
    if w["restrict_to_cords"]:
        args.append("--restrict-to-cords")
    if w["api_key_secret"]:
        args.append(f"--api-key-file={API_KEY_DIR}/{w['api_key_secret']['key']}")
    return args


def _cache_volume(cache: Cache) -> dict[str, Any]:
    """The cache volume's source: the named claim, else a (size-limited) emptyDir."""
    if cache.persistent_volume_claim:
        return {"persistentVolumeClaim": {"claimName": cache.persistent_volume_claim}}
    return {"emptyDir": {"sizeLimit": cache.size} if cache.size else {}}


def _resources(spec: ChuteSpec, gpu_resource: str | None) -> dict[str, dict[str, Any]]:
    """Requests as given; memory is also the limit; GPUs are limits (the scheduler copies them)."""
    wanted = (
        ("cpu", spec.resources.cpu),
        ("memory", spec.resources.memory),
        ("ephemeral-storage", spec.resources.ephemeral_storage),
    )
    requests = {key: value for key, value in wanted if value}
    limits: dict[str, Any] = {}
    if spec.resources.memory:
        limits["memory"] = spec.resources.memory
    if spec.node_selector.gpu_count and gpu_resource:
        limits[gpu_resource] = spec.node_selector.gpu_count
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def _tolerations(spec: ChuteSpec, gpu_resource: str | None, profile: GpuProfile) -> list[dict[str, Any]]:
    """The user's tolerations, after the GPU taints' (the vendor's resource, the profile's) when the
    Chute needs GPUs."""
    if not (spec.node_selector.gpu_count and gpu_resource):
        return list(spec.pod.tolerations)
    gpu = [{"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}, *profile.tolerations]
    return [*gpu, *spec.pod.tolerations]


def gpu_resource(gpus: list[GpuType]) -> str | None:
    """The extended resource the eligible GPUs are requested by (one vendor's; None: CPU-only)."""
    return gpus[0].resource if gpus else None


def _scaling(spec: ChuteSpec, options: RenderOptions) -> dict[str, Any]:
    """Fixed replicas, or the HPA's bounds and target when minInstances < maxInstances."""
    autoscaled = spec.min_instances < spec.max_instances
    exact = options.hpa_exact_scale_up and options.server.hpa_tolerance
    fixed = spec.replicas if spec.replicas is not None else spec.max_instances
    return {
        "scale_to_zero": autoscaled and spec.min_instances == 0 and not options.hpa_scale_to_zero,
        "shutdown_after_seconds": spec.shutdown_after_seconds,
        "replicas": None if autoscaled else fixed,
        "autoscaled": autoscaled,
        "hpa_min_replicas": spec.min_instances if options.hpa_scale_to_zero else max(1, spec.min_instances),
        "hpa_max_replicas": spec.max_instances,
        "hpa_target_utilization": f"{round(spec.scaling_threshold * 1000)}m",
        "scale_down_window_seconds": min(spec.shutdown_after_seconds, HPA_MAX_STABILIZATION_SECONDS),
        "scale_up_tolerance": "0" if exact else None,
        "unsupported": tuple(unsupported(options.server, autoscaled and options.hpa_exact_scale_up)),
    }


def _model_server(
    spec: ChuteSpec, engine: Engine, cache_path: str, chute: Chute, weights: WeightsCache | None
) -> dict[str, Any]:
    """The model container's command, arguments, environment, port and health settings."""
    port = spec.port or engine.port
    startup = spec.health.startup_timeout_seconds or engine.startup_timeout_seconds
    args = list(spec.args) if spec.args is not None else engine.args(spec, port)
    return {
        "image": spec.image,
        "image_pull_policy": spec.image_pull_policy,
        "image_pull_secrets": list(spec.image_pull_secrets),
        "command": list(spec.command) if spec.command is not None else list(engine.command),
        "args": args + list(spec.engine_args),
        "env": _env(chute, cache_path, weights),
        "env_from": list(spec.env_from),
        "port": port,
        "concurrency": spec.concurrency or engine.concurrency,
        "health_path": spec.health.path or engine.health_path,
        "startup_timeout_seconds": startup,
        "startup_failure_threshold": math.ceil(startup / STARTUP_PROBE_PERIOD_SECONDS),
        "progress_deadline_seconds": startup + 600,
        "cords": list(spec.cords) if spec.cords is not None else list(engine.cords),
        "restrict_to_cords": spec.restrict_to_cords,
        "request_timeout_seconds": spec.request_timeout_seconds,
        "max_request_body_bytes": spec.max_request_body_bytes,
        "engine_metrics_path": _engine_metrics_path(spec, engine),
    }


def _engine_metrics_path(spec: ChuteSpec, engine: Engine) -> str | None:
    """The Chute's ``monitoring.engineMetricsPath`` ('' turns it off), else its template's."""
    path = spec.monitoring.engine_metrics_path
    return (path if path is not None else engine.metrics_path) or None


def route_timeouts(workload: Workload, held_seconds: float = 0) -> dict[str, str]:
    """Gateway API ``HTTPRouteRule.timeouts`` for the Chute's routes (its HTTPRoute has them): the
    whole request (``request``) and the try of one backend (``backendRequest``) last as long as the
    Chute lets one request run (``spec.requestTimeoutSeconds``) plus ROUTE_TIMEOUT_MARGIN_SECONDS;
    ``held_seconds`` (a Chute at zero: the activator's longest hold) is added to ``request``."""
    return timeouts(workload.request_timeout_seconds, held_seconds)


def _egress(spec: ChuteSpec, options: RenderOptions) -> list[dict[str, Any]] | None:
    """DNS to the cluster's DNS pods, then the Chute's allowedEgress; None for unrestricted egress."""
    if spec.allow_external_egress:
        return None
    rules: list[dict[str, Any]] = [{"to": [options.dns.peer()], "ports": DNS_PORTS}]
    for allowed in spec.allowed_egress:
        peer = PeerSelector({NAMESPACE_NAME_LABEL: allowed.namespace}, allowed.pod_selector).peer()
        rule: dict[str, Any] = {"to": [peer]}
        if allowed.ports:
            rule["ports"] = [{"protocol": allowed.protocol, "port": port} for port in allowed.ports]
        rules.append(rule)
    return rules


def _metrics_service(chute: Chute) -> str | None:
    """The metrics Service's name when the Chute's Service may not carry the metrics port: a NodePort or
    LoadBalancer Service publishes every port on the nodes or the load balancer, where the
    NetworkPolicy may not see the client (SNAT to the node's address)."""
    if chute.spec.service.type == "ClusterIP" or not chute.spec.monitoring.service_monitor:
        return None
    return child_name(chute.metadata.name, METRICS_SERVICE_SUFFIX)


def _url(chute: Chute, options: RenderOptions) -> str:
    """The Service's in-cluster URL (the port only when it is not 80)."""
    name, namespace, port = chute.metadata.name, chute.metadata.namespace, chute.spec.service.port
    return f"http://{name}.{namespace}.svc.{options.cluster_domain}" + ("" if port == 80 else f":{port}")


def resolve(
    chute: Chute,
    options: RenderOptions,
    rollout: RolloutObservation | None = None,
    sidecar_image: str | None = None,
) -> Workload:
    """Decide every value of the Chute's children. Raises NoEligibleGpu for an impossible selector.

    ``rollout`` is what the live Deployment shows (none offline): with ``spec.rollout.strategy``
    Auto it decides whether pods are replaced instead of surged. ``sidecar_image``: the one the
    Chute's pods keep (sidecars.py decides it from the live Deployment); None: ``options``'.
    """
    spec = chute.spec
    max_surge, max_unavailable = budget(spec.rollout.strategy, rollout)
    profile = options.gpu_profile
    gpus = eligible_gpus(spec.node_selector, options.catalog, profile)
    resource = gpu_resource(gpus)
    labels = labels_for(chute)
    tolerations = _tolerations(spec, resource, profile)
    weights = cache_of(
        spec,
        chute.metadata.namespace,
        options.sidecar_image,
        options.hf_endpoint,
        tolerations,
        options.weights_download_deadline_seconds,
    )
    weights_volumes, weights_mounts = _weights_volumes(weights)
    values: dict[str, Any] = {
        "name": chute.metadata.name,
        "namespace": chute.metadata.namespace,
        "owner": owner_reference(chute),
        "labels": labels,
        "selector": selector_for(chute.metadata.name),
        # never the download pod's label: its NetworkPolicy opens egress to the pods wearing it
        "pod_labels": {**{k: v for k, v in spec.pod.labels.items() if k != WEIGHTS_LABEL}, **labels},
        "pod_annotations": {
            **spec.pod.annotations,
            "kubectl.kubernetes.io/default-container": MODEL_CONTAINER,
        },
        "template": spec.template,
        **_model_server(spec, ENGINES[spec.template], spec.cache.mount_path, chute, weights),
        "gpu_count": spec.node_selector.gpu_count,
        "eligible_gpus": [gpu.name for gpu in gpus],
        "gpu_profile": options.gpu_profile_note or f"GPU profile {profile.name}",
        **_scaling(spec, options),
        "max_surge": max_surge,
        "max_unavailable": max_unavailable,
        "service": spec.service.model_dump(by_alias=True),
        "metrics_service": _metrics_service(chute),
        "monitoring": spec.monitoring.model_dump(by_alias=True),
        "service_monitor": spec.monitoring.service_monitor,
        "metrics_readers": [
            reader.peer() for reader in (*options.metrics_readers, *options.endpoint_pickers)
        ],
        "egress": _egress(spec, options),
        "api_key_secret": spec.auth.api_key_secret_ref.model_dump() if spec.auth else None,
        "resources": _resources(spec, resource),
        "shared_memory": spec.resources.shared_memory or ("16Gi" if spec.node_selector.gpu_count else "1Gi"),
        "cache_volume": _cache_volume(spec.cache),
        "cache_mount_path": spec.cache.mount_path,
        "affinity": _affinity(chute, profile.node_terms(gpus, spec.node_selector.gpu_count)),
        "node_selector": dict(spec.pod.node_selector),
        "tolerations": tolerations,
        "pod": spec.pod.model_dump(by_alias=True, exclude_none=True),
        "termination_grace_period_seconds": spec.pod.termination_grace_period_seconds,
        "sidecar_image": sidecar_image or options.sidecar_image,
        "drain_token": drain_token(chute, options.drain_key),
        "url": _url(chute, options),
        "extra_volumes": [*weights_volumes, *spec.pod.volumes],
        "extra_volume_mounts": [*weights_mounts, *spec.pod.volume_mounts],
        "weights": weights,
    }
    current = sidecar_image is None or sidecar_image == options.sidecar_image
    values["sidecar_args"] = _sidecar_args(values, current)
    values.update(_exposure(chute, values, options))
    return Workload(**values)


def _exposure(chute: Chute, values: dict[str, Any], options: RenderOptions) -> dict[str, Any]:
    """The HTTPRoute, Ingress and InferencePool the Chute asks for (expose.py), and its external URLs."""
    held = options.activator_hold_seconds if values["scale_to_zero"] else 0
    exposure = resolve_expose(
        chute.spec.expose,
        chute.metadata.name,
        chute.spec.service.port,
        values["cords"],
        chute.spec.request_timeout_seconds,
        held,
    )
    return {
        "http_route": exposure.http_route,
        "ingress": exposure.ingress,
        "inference_pool": exposure.inference_pool,
        "external_urls": exposure.urls,
    }
