"""The children of a Chute, built from its Workload, and a weights cache's objects: one function per
kind, plain data, no I/O.

Built in Python rather than rendered as YAML text and parsed again: the parse cost about 1.9 ms of the
2.8 ms a Chute's children took (``benchmarks/reconcile_cpu.py``), and an operator that restarts builds
every Chute's children once. :func:`render_workload` and :func:`render_weights` return objects of
JSON types only, shared with nothing; :func:`workload_objects` shares the Workload's lists and dicts
(for a caller that serializes them at once, as ``render.DesiredManifests`` does).
"""

from __future__ import annotations

import json
from typing import Any

from chute_operator.weights import BACKOFF_LIMIT, WEIGHTS_VOLUME, WeightsCache
from chute_operator.wiring import (
    API_KEY_DIR,
    PROBE_PERIOD_SECONDS,
    SERVICE_ROLE_LABEL,
    STARTUP_PROBE_PERIOD_SECONDS,
)
from chute_operator.workload import Workload
from chute_shared import paths, ports, weights
from chute_shared.cluster import DRAIN_TOKEN_ENV, MODEL_CONTAINER, SIDECAR_CONTAINER
from chute_shared.headers import DRAIN_TOKEN_HEADER
from chute_shared.metrics import UTILIZATION_METRIC

Manifest = dict[str, Any]

API_KEY_VOLUME = "chute-api-key"
SHARED_MEMORY_VOLUME = "chute-dshm"
CACHE_VOLUME = "chute-cache"
DEFAULT_POD_SECURITY = {"seccompProfile": {"type": "RuntimeDefault"}}


def _object(api_version: str, kind: str, metadata: Manifest, spec: Manifest) -> Manifest:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}


def _put_given(target: Manifest, **fields: Any) -> None:
    """Set each of ``fields`` that is given (not empty, not None), in order."""
    target.update((name, value) for name, value in fields.items() if value)


def _metadata(w: Workload, annotations: dict[str, str] | None = None) -> Manifest:
    metadata: Manifest = {"name": w.name, "namespace": w.namespace, "labels": w.labels}
    if annotations:
        metadata["annotations"] = annotations
    if w.owner:
        metadata["ownerReferences"] = [w.owner]
    return metadata


def _port(name: str, number: int, target: str | None = None) -> Manifest:
    """A container port (``target`` None) or a Service port sent to the named ``target``."""
    if target is None:
        return {"name": name, "containerPort": number, "protocol": "TCP"}
    return {"name": name, "port": number, "targetPort": target, "protocol": "TCP"}


def network_policy(w: Workload) -> Manifest:
    """Ingress: the sidecar's serving port from anywhere, its metrics port from the metrics readers
    (Prometheus, the operator's metrics API). Nothing else: not the model's own port (the custom and
    diffusion images may bind 0.0.0.0), not the probe and drain port (the kubelet, on the node, is
    always allowed). By number, not by name: the sidecar is a native sidecar (an init container), whose
    named ports not every network plugin resolves (kube-network-policies looks in containers only).
    Egress (when ``allowExternalEgress`` is false): DNS to the cluster's DNS pods, then
    ``spec.allowedEgress``."""
    ingress: list[Manifest] = [{"ports": [{"protocol": "TCP", "port": ports.SIDECAR_PORT}]}]
    if w.metrics_readers:
        ingress.append(
            {"from": w.metrics_readers, "ports": [{"protocol": "TCP", "port": ports.METRICS_PORT}]}
        )
    spec: Manifest = {
        "podSelector": {"matchLabels": w.selector},
        "policyTypes": ["Ingress"] if w.egress is None else ["Ingress", "Egress"],
        "ingress": ingress,
    }
    if w.egress is not None:
        spec["egress"] = w.egress
    return _object("networking.k8s.io/v1", "NetworkPolicy", _metadata(w), spec)


def service(w: Workload) -> Manifest:
    """The serving port; on a ClusterIP Service the metrics port too (the admin port, probes and
    drain, is for the kubelet and stays unpublished; a NodePort or LoadBalancer Service leaves the
    metrics port to :func:`metrics_service`)."""
    service_ports = [_port(ports.SERVING_PORT_NAME, w.service["port"], ports.SERVING_PORT_NAME)]
    if w.service["type"] == "ClusterIP":
        service_ports.append(_port(ports.METRICS_PORT_NAME, ports.METRICS_PORT, ports.METRICS_PORT_NAME))
    return _object(
        "v1",
        "Service",
        _metadata(w, w.service.get("annotations")),
        {"type": w.service["type"], "selector": w.selector, "ports": service_ports},
    )


def metrics_service(w: Workload) -> Manifest:
    """The metrics port for the ServiceMonitor when the Chute's Service is a NodePort or
    LoadBalancer: headless and ClusterIP, so it is published on no node and no load balancer."""
    metadata: Manifest = {
        "name": w.metrics_service,
        "namespace": w.namespace,
        "labels": {**w.labels, SERVICE_ROLE_LABEL: "metrics"},
    }
    if w.owner:
        metadata["ownerReferences"] = [w.owner]
    return _object(
        "v1",
        "Service",
        metadata,
        {
            "type": "ClusterIP",
            "clusterIP": "None",
            "selector": w.selector,
            "ports": [_port(ports.METRICS_PORT_NAME, ports.METRICS_PORT, ports.METRICS_PORT_NAME)],
        },
    )


def _sidecar(w: Workload) -> Manifest:
    """The native sidecar (an init container that keeps running). No startup probe: the kubelet
    starts the model container as soon as this one runs, so the two start side by side (a woken
    Chute's held requests wait for the model's start); the model's own probes fail until the sidecar
    listens, within their long startup budget. Ready every second: a woken pod is Ready within a
    second of its model; 5 failures in a row (about 5 s of a model not answering, or a drain) take it
    out of the Service."""
    sidecar: Manifest = {
        "name": SIDECAR_CONTAINER,
        "image": w.sidecar_image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["chute-operator", "sidecar"],
        "args": w.sidecar_args,
    }
    if w.drain_token:
        sidecar["env"] = [{"name": DRAIN_TOKEN_ENV, "value": w.drain_token}]
    sidecar.update(
        ports=[
            _port(ports.SERVING_PORT_NAME, ports.SIDECAR_PORT),
            _port(ports.METRICS_PORT_NAME, ports.METRICS_PORT),
            _port(ports.ADMIN_PORT_NAME, ports.ADMIN_PORT),
        ],
        livenessProbe={
            "httpGet": {"path": paths.LIVE_PATH, "port": ports.ADMIN_PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        readinessProbe={
            "httpGet": {"path": paths.READY_PATH, "port": ports.ADMIN_PORT_NAME},
            "periodSeconds": 1,
            "timeoutSeconds": 2,
            "failureThreshold": 5,
        },
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    )
    if w.api_key_secret:
        sidecar["volumeMounts"] = [{"name": API_KEY_VOLUME, "mountPath": API_KEY_DIR, "readOnly": True}]
    return sidecar


def _model(w: Workload) -> Manifest:
    """The model server. Probes go through the sidecar: the model is never killed while it is still
    loading, only when it has not come up within startupTimeoutSeconds or stops answering later. On
    pod termination Kubernetes stops the model before its (native) sidecar: the sidecar turns
    unready, keeps serving while endpoints update, and lets in-flight requests finish before the
    preStop hook returns and the model gets SIGTERM. Before a probe-triggered restart too: the drain
    ends once the restarted model answers. Only this hook has the token."""
    model: Manifest = {"name": MODEL_CONTAINER, "image": w.image}
    _put_given(model, imagePullPolicy=w.image_pull_policy, command=w.command, args=w.args)
    model["env"] = w.env
    _put_given(model, envFrom=w.env_from)
    drain: Manifest = {"path": paths.DRAIN_PATH, "port": ports.ADMIN_PORT}
    if w.drain_token:
        drain["httpHeaders"] = [{"name": DRAIN_TOKEN_HEADER, "value": w.drain_token}]
    model.update(
        ports=[{"name": "model", "containerPort": w.port, "protocol": "TCP"}],
        startupProbe={
            "httpGet": {"path": paths.STARTUP_PATH, "port": ports.ADMIN_PORT},
            "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": w.startup_failure_threshold,
        },
        livenessProbe={
            "httpGet": {"path": paths.MODEL_LIVE_PATH, "port": ports.ADMIN_PORT},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        lifecycle={"preStop": {"httpGet": drain}},
        resources=w.resources,
        securityContext={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        volumeMounts=[
            # the pod's own memory emptyDir, not the host's (bandit B108)
            {"name": SHARED_MEMORY_VOLUME, "mountPath": "/dev/shm"},  # nosec B108
            {"name": CACHE_VOLUME, "mountPath": w.cache_mount_path},
            *w.extra_volume_mounts,
        ],
    )
    return model


def _volumes(w: Workload) -> list[Manifest]:
    volumes: list[Manifest] = [
        {"name": SHARED_MEMORY_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": w.shared_memory}},
        {"name": CACHE_VOLUME, **w.cache_volume},
    ]
    if w.api_key_secret:
        key = w.api_key_secret["key"]
        secret = {"secretName": w.api_key_secret["name"], "items": [{"key": key, "path": key}]}
        volumes.append({"name": API_KEY_VOLUME, "secret": secret})
    return volumes + w.extra_volumes


def _pod_spec(w: Workload) -> Manifest:
    pod: Manifest = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": "serviceAccountName" in w.pod,
    }
    for field in ("serviceAccountName", "priorityClassName", "runtimeClassName"):
        if field in w.pod:
            pod[field] = w.pod[field]
    pod["terminationGracePeriodSeconds"] = w.termination_grace_period_seconds
    pod["securityContext"] = w.pod.get("securityContext", DEFAULT_POD_SECURITY)
    _put_given(
        pod,
        imagePullSecrets=[{"name": name} for name in w.image_pull_secrets],
        nodeSelector=w.node_selector,
        affinity=w.affinity,
        tolerations=w.tolerations,
    )
    pod.update(initContainers=[_sidecar(w)], containers=[_model(w)], volumes=_volumes(w))
    return pod


def deployment(w: Workload) -> Manifest:
    spec: Manifest = {} if w.replicas is None else {"replicas": w.replicas}
    spec.update(
        selector={"matchLabels": w.selector},
        revisionHistoryLimit=3,
        progressDeadlineSeconds=w.progress_deadline_seconds,
        strategy={
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": w.max_surge, "maxUnavailable": w.max_unavailable},
        },
        template={
            "metadata": {"labels": w.pod_labels, "annotations": w.pod_annotations},
            "spec": _pod_spec(w),
        },
    )
    return _object("apps/v1", "Deployment", _metadata(w), spec)


def hpa(w: Workload) -> Manifest:
    """Average requests in flight per replica over its concurrency, read from each sidecar's
    /_conn_stats and served by the operator's custom metrics API (or by prometheus-adapter). Up at
    once when the average exceeds scalingThreshold; down only after it stayed low for
    shutdownAfterSeconds (capped at 3600), one replica a minute."""
    scale_up: Manifest = {"stabilizationWindowSeconds": 0}
    if w.scale_up_tolerance is not None:
        scale_up["tolerance"] = w.scale_up_tolerance
    return _object(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        _metadata(w),
        {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name},
            "minReplicas": w.hpa_min_replicas,
            "maxReplicas": w.hpa_max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": UTILIZATION_METRIC},
                        "target": {"type": "AverageValue", "averageValue": w.hpa_target_utilization},
                    },
                }
            ],
            "behavior": {
                "scaleUp": scale_up,
                "scaleDown": {
                    "stabilizationWindowSeconds": w.scale_down_window_seconds,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
            },
        },
    )


def service_monitor(w: Workload) -> Manifest:
    selector = {**w.selector, SERVICE_ROLE_LABEL: "metrics"} if w.metrics_service else w.selector
    metadata: Manifest = {
        "name": w.name,
        "namespace": w.namespace,
        "labels": {**w.monitoring["labels"], **w.labels},
    }
    if w.owner:
        metadata["ownerReferences"] = [w.owner]
    endpoint = {
        "port": ports.METRICS_PORT_NAME,
        "path": paths.METRICS_PATH,
        "interval": w.monitoring["interval"],
    }
    return _object(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        metadata,
        {"selector": {"matchLabels": selector}, "endpoints": [endpoint]},
    )


def inference_pool(w: Workload) -> Manifest:
    """Selects by the Chute's label only (a version or pod-template hash would change at every
    rollout); targets the sidecar's serving port, so its API key check and concurrency limit stay in
    the path."""
    pool = w.inference_pool or {}
    spec: Manifest = {
        "selector": {"matchLabels": pool["selector"]["matchLabels"]},
        "targetPorts": pool["targetPorts"],
    }
    if "endpointPickerRef" in pool:
        spec["endpointPickerRef"] = pool["endpointPickerRef"]
    return _object("inference.networking.k8s.io/v1", "InferencePool", _metadata(w), spec)


def http_route(w: Workload) -> Manifest:
    """To the Service's serving port (or the InferencePool's target port): never metrics or admin."""
    route = w.http_route or {}
    spec: Manifest = {"parentRefs": route["parentRefs"]}
    if "hostnames" in route:
        spec["hostnames"] = route["hostnames"]
    spec["rules"] = route["rules"]
    return _object("gateway.networking.k8s.io/v1", "HTTPRoute", _metadata(w), spec)


def ingress(w: Workload) -> Manifest:
    """To the Service's serving port, by name: never metrics or admin."""
    wanted = w.ingress or {}
    given = wanted["spec"]
    spec: Manifest = {key: given[key] for key in ("ingressClassName", "tls") if key in given}
    spec["rules"] = given["rules"]
    return _object("networking.k8s.io/v1", "Ingress", _metadata(w, wanted.get("annotations")), spec)


def _copy(objects: list[Manifest]) -> list[Manifest]:
    """A copy of JSON types only: nothing shared with what built them, a tuple made a list."""
    copied: list[Manifest] = json.loads(json.dumps(objects))
    return copied


def workload_objects(w: Workload) -> list[Manifest]:
    """The children of a resolved Chute, in apply order: the NetworkPolicy before the Deployment, so
    that no pod runs before its traffic is restricted; the InferencePool before the HTTPRoute that
    sends to it. They share the Workload's lists and dicts: not to be changed (:func:`render_workload`)."""
    built = [network_policy(w), service(w)]
    if w.metrics_service:
        built.append(metrics_service(w))
    built.append(deployment(w))
    if w.autoscaled:
        built.append(hpa(w))
    if w.service_monitor:
        built.append(service_monitor(w))
    if w.inference_pool is not None:
        built.append(inference_pool(w))
    if w.http_route is not None:
        built.append(http_route(w))
    if w.ingress is not None:
        built.append(ingress(w))
    return built


def render_workload(w: Workload) -> list[Manifest]:
    """:func:`workload_objects`, copied: the caller may change them."""
    return _copy(workload_objects(w))


def _cache_metadata(c: WeightsCache) -> Manifest:
    return {"name": c.name, "namespace": c.namespace, "labels": c.labels}


def weights_network_policy(c: WeightsCache) -> Manifest:
    """The download pod of a weights cache, and only it, may open connections out (to the hub);
    nothing connects to it. The serving pods' own NetworkPolicy keeps them off the hub."""
    return _object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        _cache_metadata(c),
        {
            "podSelector": {"matchLabels": {weights.WEIGHTS_LABEL: c.key}},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [{}],
        },
    )


def weights_claim(c: WeightsCache) -> Manifest:
    """The weights cache of one model revision (docs/weights.md): shared by every Chute serving it."""
    spec: Manifest = {"accessModes": [c.access_mode], "resources": {"requests": {"storage": c.size}}}
    if c.storage_class:
        spec["storageClassName"] = c.storage_class
    return _object("v1", "PersistentVolumeClaim", _cache_metadata(c), spec)


def _downloader(c: WeightsCache) -> Manifest:
    env: list[Manifest] = [
        # in the pod's own /tmp emptyDir, not the host's (bandit B108)
        {"name": "HF_HOME", "value": "/tmp/huggingface"},  # nosec B108
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "HF_HUB_DISABLE_PROGRESS_BARS", "value": "1"},
    ]
    if c.endpoint:
        env.append({"name": "HF_ENDPOINT", "value": c.endpoint})
    if c.token_secret:
        secret = {"name": c.token_secret["name"], "key": c.token_secret["key"]}
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": secret}})
    return {
        "name": weights.DOWNLOAD_CONTAINER,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "chute_weights", "download"],
        "args": ["--repo", c.repo, "--revision", c.revision, "--cache", c.hub_cache],
        "env": env,
        "terminationMessagePolicy": "File",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": WEIGHTS_VOLUME, "mountPath": weights.WEIGHTS_MOUNT_PATH},
            {"name": "tmp", "mountPath": "/tmp"},  # nosec B108
        ],
    }


def weights_job(c: WeightsCache) -> Manifest:
    """Fills the cache once, with the real huggingface_hub client (python -m chute_weights). The only
    pod that reaches the hub; the serving pods mount the cache read-only and run offline. A hub that
    trickles bytes must not hold a pod with egress for ever: the Job fails at its deadline, and the
    operator tries again later (weights.RETRY_SECONDS). A permanent failure (not found, gated, a
    refused token, a full disk) fails the Job at once; an evicted or preempted pod does not count
    against the retries."""
    pod: Manifest = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if c.tolerations:
        pod["tolerations"] = list(c.tolerations)
    pod.update(
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        containers=[_downloader(c)],
        volumes=[
            {"name": WEIGHTS_VOLUME, "persistentVolumeClaim": {"claimName": c.name}},
            {"name": "tmp", "emptyDir": {}},
        ],
    )
    permanent = {
        "containerName": weights.DOWNLOAD_CONTAINER,
        "operator": "In",
        "values": [weights.EXIT_PERMANENT],
    }
    return _object(
        "batch/v1",
        "Job",
        _cache_metadata(c),
        {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": c.deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": permanent},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {"metadata": {"labels": c.labels}, "spec": pod},
        },
    )


def render_weights(c: WeightsCache) -> list[Manifest]:
    """A weights cache's NetworkPolicy, PersistentVolumeClaim and download Job, in apply order
    (weights.WEIGHTS_KINDS), without owners (each Chute using it adds its own reference:
    weights.join_manifest); copied, as :func:`render_workload`."""
    return _copy([weights_network_policy(c), weights_claim(c), weights_job(c)])
