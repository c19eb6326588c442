"""Resolve a Chute into a Workload: template defaults applied, every derived value computed.

Pure: no I/O, no clients. The manifest templates read only the Workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from chute_operator.api import Chute, Cord
from chute_operator.engines import ENGINES
from chute_operator.gpus import PRODUCT_LABEL, Catalog, eligible_gpus

SIDECAR_PORT = 8080
ADMIN_PORT = 9090
SIDECAR_NAME = "chute-sidecar"
MODEL_CONTAINER = "model"
API_KEY_DIR = "/var/run/chutes/auth"
DRAIN_SECONDS = 5
PROBE_PERIOD_SECONDS = 10
GPU_RESOURCE = "nvidia.com/gpu"
CHUTE_LABEL = "chutes.ai/chute"
MANAGED_BY = "chute-operator"
DEFAULT_SIDECAR_IMAGE = "chute-operator:0.1.0"
HPA_METRIC = "chute_utilization_ratio"
HPA_MAX_STABILIZATION_SECONDS = 3600


@dataclass(frozen=True)
class RenderOptions:
    """Operator-wide settings that shape every Chute's manifests."""

    catalog: Catalog
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    cluster_domain: str = "cluster.local"
    hpa_scale_to_zero: bool = False
    """Render HPA minReplicas 0 for minInstances 0 (needs the HPAScaleToZero feature gate)."""


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
    concurrency: int
    health_path: str
    startup_timeout_seconds: int
    startup_failure_threshold: int
    progress_deadline_seconds: int
    cords: list[Cord]
    restrict_to_cords: bool
    replicas: int | None
    autoscaled: bool
    hpa_min_replicas: int
    hpa_max_replicas: int
    hpa_target_utilization: str
    scale_down_window_seconds: int
    service: dict[str, Any]
    monitoring: dict[str, Any]
    service_monitor: bool
    network_policy: bool
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
    url: str
    extra_volumes: list[dict[str, Any]] = field(default_factory=list)
    extra_volume_mounts: list[dict[str, Any]] = field(default_factory=list)


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


def _env(chute: Chute, cache_path: str) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {"HF_HOME": {"name": "HF_HOME", "value": f"{cache_path}/huggingface"}}
    for var in chute.spec.env:
        merged[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    return list(merged.values())


def _affinity(chute: Chute, products: list[str]) -> dict[str, Any] | None:
    affinity = dict(chute.spec.pod.affinity or {})
    if not products:
        return affinity or None
    expression = {"key": PRODUCT_LABEL, "operator": "In", "values": products}
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = [dict(t) for t in required.get("nodeSelectorTerms") or [{}]]
    for term in terms:
        term["matchExpressions"] = [*(term.get("matchExpressions") or []), expression]
    required["nodeSelectorTerms"] = terms
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    affinity["nodeAffinity"] = node_affinity
    return affinity


def _sidecar_args(w: dict[str, Any]) -> list[str]:
    args = [
        f"--upstream=http://127.0.0.1:{w['port']}",
        f"--port={SIDECAR_PORT}",
        f"--admin-port={ADMIN_PORT}",
        f"--concurrency={w['concurrency']}",
        f"--health-path={w['health_path']}",
        f"--startup-timeout-seconds={w['startup_timeout_seconds']}",
        f"--drain-seconds={DRAIN_SECONDS}",
        f"--shutdown-timeout-seconds={max(5, w['termination_grace_period_seconds'] - DRAIN_SECONDS - 5)}",
    ]
    args += [f"--cord={cord.method} {cord.path}" for cord in w["cords"]]
    if w["restrict_to_cords"]:
        args.append("--restrict-to-cords")
    if w["api_key_secret"]:
        args.append(f"--api-key-file={API_KEY_DIR}/{w['api_key_secret']['key']}")
    return args


def resolve(chute: Chute, options: RenderOptions) -> Workload:
    """Decide every value of the Chute's children. Raises NoEligibleGpu for an impossible selector."""
    spec = chute.spec
    engine = ENGINES[spec.template]
    gpus = eligible_gpus(spec.node_selector, options.catalog)
    products = sorted({p for gpu in gpus for p in gpu.products})
    gpu_count = spec.node_selector.gpu_count
    name, namespace = chute.metadata.name, chute.metadata.namespace
    labels = labels_for(chute)
    port = spec.port or engine.port
    startup = spec.health.startup_timeout_seconds or engine.startup_timeout_seconds
    autoscaled = spec.min_instances < spec.max_instances
    cache = spec.cache
    cache_volume: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": cache.persistent_volume_claim}}
        if cache.persistent_volume_claim
        else {"emptyDir": {"sizeLimit": cache.size} if cache.size else {}}
    )
    requests = {
        key: value
        for key, value in (
            ("cpu", spec.resources.cpu),
            ("memory", spec.resources.memory),
            ("ephemeral-storage", spec.resources.ephemeral_storage),
        )
        if value
    }
    limits: dict[str, Any] = {}
    if spec.resources.memory:
        limits["memory"] = spec.resources.memory
    if gpu_count:
        limits[GPU_RESOURCE] = gpu_count
    tolerations = list(spec.pod.tolerations)
    if gpu_count:
        tolerations.insert(0, {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    service_port = spec.service.port
    values: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "owner": owner_reference(chute),
        "labels": labels,
        "selector": selector_for(name),
        "pod_labels": {**spec.pod.labels, **labels},
        "pod_annotations": {
            **spec.pod.annotations,
            "kubectl.kubernetes.io/default-container": MODEL_CONTAINER,
        },
        "template": spec.template,
        "image": spec.image,
        "image_pull_policy": spec.image_pull_policy,
        "image_pull_secrets": list(spec.image_pull_secrets),
        "command": list(spec.command) if spec.command is not None else list(engine.command),
        "args": (list(spec.args) if spec.args is not None else engine.args(spec, port))
        + list(spec.engine_args),
        "env": _env(chute, cache.mount_path),
        "env_from": list(spec.env_from),
        "port": port,
        "gpu_count": gpu_count,
        "eligible_gpus": [gpu.name for gpu in gpus],
        "concurrency": spec.concurrency or engine.concurrency,
        "health_path": spec.health.path or engine.health_path,
        "startup_timeout_seconds": startup,
        "startup_failure_threshold": math.ceil(startup / PROBE_PERIOD_SECONDS),
        "progress_deadline_seconds": startup + 600,
        "cords": list(spec.cords) if spec.cords is not None else list(engine.cords),
        "restrict_to_cords": spec.restrict_to_cords,
        "replicas": None
        if autoscaled
        else (spec.replicas if spec.replicas is not None else spec.max_instances),
        "autoscaled": autoscaled,
        "hpa_min_replicas": spec.min_instances if options.hpa_scale_to_zero else max(1, spec.min_instances),
        "hpa_max_replicas": spec.max_instances,
        "hpa_target_utilization": f"{round(spec.scaling_threshold * 1000)}m",
        "scale_down_window_seconds": min(spec.shutdown_after_seconds, HPA_MAX_STABILIZATION_SECONDS),
        "service": spec.service.model_dump(by_alias=True),
        "monitoring": spec.monitoring.model_dump(by_alias=True),
        "service_monitor": spec.monitoring.service_monitor,
        "network_policy": not spec.allow_external_egress,
        "api_key_secret": spec.auth.api_key_secret_ref.model_dump() if spec.auth else None,
        "resources": {key: value for key, value in (("requests", requests), ("limits", limits)) if value},
        "shared_memory": spec.resources.shared_memory or ("16Gi" if gpu_count else "1Gi"),
        "cache_volume": cache_volume,
        "cache_mount_path": cache.mount_path,
        "affinity": _affinity(chute, products),
        "node_selector": dict(spec.pod.node_selector),
        "tolerations": tolerations,
        "pod": spec.pod.model_dump(by_alias=True, exclude_none=True),
        "termination_grace_period_seconds": spec.pod.termination_grace_period_seconds,
        "sidecar_image": options.sidecar_image,
        "url": f"http://{name}.{namespace}.svc.{options.cluster_domain}"
        + ("" if service_port == 80 else f":{service_port}"),
        "extra_volumes": list(spec.pod.volumes),
        "extra_volume_mounts": list(spec.pod.volume_mounts),
    }
    values["sidecar_args"] = _sidecar_args(values)
    return Workload(**values)
