"""Chutes the API must refuse, each with the field its error names.

Shared by the offline tests (pydantic) and the API server tests (CRD schema and CEL rules).
"""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "apiVersion": "chutes.ai/v1alpha1",
    "kind": "Chute",
    "metadata": {"name": "invalid"},
    "spec": {"image": "vllm/vllm-openai:v0.10.1", "template": "vllm", "model": {"name": "org/model"}},
}


def chute_with(**spec: Any) -> dict[str, Any]:
    """BASE with these spec fields replaced."""
    document = copy.deepcopy(BASE)
    document["spec"].update(spec)
    return document


def selecting(**node_selector: Any) -> dict[str, Any]:
    """BASE with this spec.nodeSelector."""
    return chute_with(nodeSelector=node_selector)


GW = {"parentRefs": [{"name": "gw"}]}


def exposing(**expose: Any) -> dict[str, Any]:
    """BASE with this spec.expose."""
    return chute_with(expose=expose)


def _named(name: str) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document["metadata"]["name"] = name
    return document


# (case id, document, text the error must contain: the field it names)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("gpu-count-too-high", chute_with(nodeSelector={"gpuCount": 9}), "gpuCount"),
    ("gpu-count-negative", chute_with(nodeSelector={"gpuCount": -1}), "gpuCount"),
    (
        "include-exclude-overlap",
        chute_with(nodeSelector={"include": ["h100"], "exclude": ["h100"]}),
        "include",
    ),
    ("gpu-name-format", chute_with(nodeSelector={"include": ["H100!"]}), "include"),
    ("cpu-only-with-include", chute_with(nodeSelector={"gpuCount": 0, "include": ["l4"]}), "gpuCount"),
    ("min-above-max", chute_with(minInstances=3, maxInstances=2), "minInstances"),
    (
        "replicas-while-autoscaled",
        chute_with(minInstances=1, maxInstances=3, replicas=2),
        "spec.replicas (what `kubectl scale` sets) applies only when minInstances == maxInstances",
    ),
    ("max-instances-zero", chute_with(maxInstances=0), "maxInstances"),
    ("max-instances-too-high", chute_with(maxInstances=101), "maxInstances"),
    ("concurrency-zero", chute_with(concurrency=0), "concurrency"),
    ("concurrency-too-high", chute_with(concurrency=257), "concurrency"),
    ("threshold-zero", chute_with(scalingThreshold=0), "scalingThreshold"),
    ("threshold-above-one", chute_with(scalingThreshold=1.5), "scalingThreshold"),
    ("shutdown-too-short", chute_with(shutdownAfterSeconds=10), "shutdownAfterSeconds"),
    ("shutdown-too-long", chute_with(shutdownAfterSeconds=604801), "shutdownAfterSeconds"),
    ("revision-not-hex", chute_with(model={"name": "org/model", "revision": "main"}), "revision"),
    ("template-unknown", chute_with(template="tensorrt"), "template"),
    ("model-missing", chute_with(model=None), "model"),
    ("reserved-port", chute_with(port=8080), "port"),
    ("reserved-metrics-port", chute_with(port=9090), "port"),
    ("reserved-admin-port", chute_with(port=9091), "port"),
    ("cord-path-relative", chute_with(cords=[{"path": "v1/chat", "method": "POST"}]), "path"),
    ("cord-method-unknown", chute_with(cords=[{"path": "/x", "method": "FETCH"}]), "method"),
    ("cord-path-whitespace", chute_with(cords=[{"path": "/v1/chat completions"}]), "path"),
    ("cord-path-star-inside", chute_with(cords=[{"path": "/v1/*/completions"}]), "path"),
    ("cord-path-query", chute_with(cords=[{"path": "/v1/models?limit=1"}]), "path"),
    (
        "cache-both",
        chute_with(cache={"size": "10Gi", "persistentVolumeClaim": "weights"}),
        "persistentVolumeClaim",
    ),
    ("quantity-garbage", chute_with(resources={"memory": "lots"}), "memory"),
    ("service-type-unknown", chute_with(service={"type": "Ingress"}), "type"),
    ("image-empty", chute_with(image=""), "image"),
    ("name-uppercase", _named("Qwen3"), "metadata.name"),
    ("name-too-long", _named("a" * 64), "metadata.name"),
    # types
    ("gpu-count-string", selecting(gpuCount="two"), "gpuCount"),
    ("min-instances-fraction", chute_with(minInstances=1.5), "minInstances"),
    ("image-number", chute_with(image=42), "image"),
    ("cords-not-a-list", chute_with(cords="/v1/chat"), "cords"),
    ("env-a-map", chute_with(env={"A": "1"}), "env"),
    ("restrict-to-cords-word", chute_with(restrictToCords="maybe"), "restrictToCords"),
    ("cord-stream-number", chute_with(cords=[{"path": "/x", "stream": 3}]), "stream"),
    ("ephemeral-storage-bool", chute_with(resources={"ephemeralStorage": True}), "ephemeralStorage"),
    ("unknown-spec-field", chute_with(gpus=2), "gpus"),
    ("unknown-node-selector-field", selecting(gpuType="h100"), "gpuType"),
    ("unknown-resource", chute_with(resources={"gpu": "1"}), "gpu"),
    ("rollout-strategy-unknown", chute_with(rollout={"strategy": "BlueGreen"}), "strategy"),
    ("pull-policy-unknown", chute_with(imagePullPolicy="Sometimes"), "imagePullPolicy"),
    ("template-capitalised", chute_with(template="vLLM"), "template"),
    # ranges
    ("min-vram-negative", selecting(minVramGbPerGpu=-1), "minVramGbPerGpu"),
    ("min-vram-too-high", selecting(minVramGbPerGpu=1025), "minVramGbPerGpu"),
    ("min-instances-negative", chute_with(minInstances=-1), "minInstances"),
    ("replicas-negative", chute_with(replicas=-1), "replicas"),
    ("replicas-too-high", chute_with(replicas=101), "replicas"),
    ("service-port-zero", chute_with(service={"port": 0}), "port"),
    ("service-port-too-high", chute_with(service={"port": 65536}), "port"),
    ("port-too-high", chute_with(port=70000), "port"),
    ("startup-timeout-too-short", chute_with(health={"startupTimeoutSeconds": 29}), "startupTimeoutSeconds"),
    ("health-path-relative", chute_with(health={"path": "health"}), "path"),
    (
        "grace-period-too-short",
        chute_with(pod={"terminationGracePeriodSeconds": 5}),
        "terminationGracePeriodSeconds",
    ),
    ("threshold-negative", chute_with(scalingThreshold=-0.1), "scalingThreshold"),
    ("interval-without-unit", chute_with(monitoring={"interval": "30"}), "interval"),
    ("interval-in-days", chute_with(monitoring={"interval": "1d"}), "interval"),
    ("egress-port-zero", chute_with(allowedEgress=[{"namespace": "m", "ports": [0]}]), "ports"),
    ("egress-protocol-sctp", chute_with(allowedEgress=[{"namespace": "m", "protocol": "SCTP"}]), "protocol"),
    # GPUs: names and conflicts the schema sees (unknown names are for the operator: JUDGED_BY_OPERATOR)
    ("gpu-name-too-long", selecting(include=["h" * 33]), "include"),
    ("gpu-name-uppercase-exclude", selecting(exclude=["A100"]), "exclude"),
    ("gpu-name-space", selecting(include=["h 100"]), "include"),
    ("gpu-name-empty", selecting(include=[""]), "include"),
    ("include-too-many", selecting(include=[f"g{i}" for i in range(65)]), "include"),
    ("cpu-only-with-exclude", selecting(gpuCount=0, exclude=["h100"]), "gpuCount"),
    # cords
    ("cord-path-empty", chute_with(cords=[{"path": ""}]), "path"),
    ("cord-path-too-long", chute_with(cords=[{"path": "/" + "a" * 256}]), "path"),
    ("cord-method-lowercase", chute_with(cords=[{"path": "/x", "method": "post"}]), "method"),
    ("cord-path-fragment", chute_with(cords=[{"path": "/v1#x"}]), "path"),
    ("cord-path-missing", chute_with(cords=[{"method": "GET"}]), "path"),
    ("cords-too-many", chute_with(cords=[{"path": f"/r{i}"} for i in range(65)]), "cords"),
    # names
    ("name-underscore", _named("my_chute"), "metadata.name"),
    ("name-leading-hyphen", _named("-chute"), "metadata.name"),
    ("name-leading-digit", _named("1chute"), "metadata.name"),
    ("name-dot", _named("qwen.3"), "metadata.name"),
    ("env-name-empty", chute_with(env=[{"name": "", "value": "x"}]), "name"),
    ("pull-secret-empty", chute_with(imagePullSecrets=[""]), "imagePullSecrets"),
    ("egress-namespace-uppercase", chute_with(allowedEgress=[{"namespace": "Mirrors"}]), "namespace"),
    # resources
    ("cpu-negative", chute_with(resources={"cpu": "-1"}), "cpu"),
    ("memory-two-dots", chute_with(resources={"memory": "1.5.5Gi"}), "memory"),
    ("shared-memory-gb", chute_with(resources={"sharedMemory": "16GB"}), "sharedMemory"),
    ("cache-size-word", chute_with(cache={"size": "huge"}), "size"),
    ("cache-mount-relative", chute_with(cache={"mountPath": "cache"}), "mountPath"),
    # auth refs
    ("auth-without-ref", chute_with(auth={}), "apiKeySecretRef"),
    ("auth-secret-name-empty", chute_with(auth={"apiKeySecretRef": {"name": ""}}), "name"),
    ("auth-secret-key-empty", chute_with(auth={"apiKeySecretRef": {"name": "keys", "key": ""}}), "key"),
    ("auth-secret-name-too-long", chute_with(auth={"apiKeySecretRef": {"name": "k" * 254}}), "name"),
    # huge values
    ("gpu-count-huge", selecting(gpuCount=10**12), "gpuCount"),
    ("max-instances-huge", chute_with(maxInstances=2**40), "maxInstances"),
    ("shutdown-float-huge", chute_with(shutdownAfterSeconds=1e20), "shutdownAfterSeconds"),
    ("engine-arg-too-long", chute_with(engineArgs=["x" * 4097]), "engineArgs"),
    ("engine-args-too-many", chute_with(engineArgs=["--x"] * 129), "engineArgs"),
    ("image-too-long", chute_with(image="i" * 1025), "image"),
    ("model-name-too-long", chute_with(model={"name": "m" * 257}), "name"),
    (
        "egress-too-many",
        chute_with(allowedEgress=[{"namespace": f"n{i}"} for i in range(33)]),
        "allowedEgress",
    ),
    # unicode and control characters
    ("name-unicode", _named("modèle"), "metadata.name"),
    ("cord-path-unicode", chute_with(cords=[{"path": "/v1/chät"}]), "path"),
    ("gpu-name-unicode", selecting(include=["h100é"]), "include"),
    ("revision-unicode", chute_with(model={"name": "o/m", "revision": "ä" * 40}), "revision"),
    ("interval-fullwidth-unit", chute_with(monitoring={"interval": "30\uff53"}), "interval"),
    ("image-leading-space", chute_with(image=" vllm/vllm-openai:v0.10.1"), "image"),
    ("image-newline", chute_with(image="vllm/vllm-openai\n:v0.10.1"), "image"),
    ("env-name-unicode", chute_with(env=[{"name": "\u00c4PI_KEY", "value": "x"}]), "name"),
    ("env-name-equals", chute_with(env=[{"name": "A=B", "value": "x"}]), "name"),
    # spec.expose: each refusal names the field
    ("expose-route-path-relative", exposing(httpRoute={**GW, "path": "qwen"}), "httpRoute.path"),
    ("expose-route-path-dot-segment", exposing(httpRoute={**GW, "path": "/a/../b"}), "httpRoute.path"),
    ("expose-route-path-double-slash", exposing(httpRoute={**GW, "path": "/a//b"}), "httpRoute.path"),
    ("expose-route-rewrite-without-path", exposing(httpRoute={**GW, "rewritePrefix": "/"}), "rewritePrefix"),
    (
        "expose-route-rewrite-relative",
        exposing(httpRoute={**GW, "path": "/a", "rewritePrefix": "b"}),
        "rewritePrefix",
    ),
    (
        "expose-route-cords-with-path",
        exposing(httpRoute={**GW, "matchCords": True, "path": "/a"}),
        "matchCords",
    ),
    (
        "expose-route-hostname-uppercase",
        exposing(httpRoute={**GW, "hostnames": ["Models.example.com"]}),
        "hostnames",
    ),
    (
        "expose-route-hostname-port",
        exposing(httpRoute={**GW, "hostnames": ["a.example.com:443"]}),
        "hostnames",
    ),
    ("expose-route-no-parent", exposing(httpRoute={"parentRefs": []}), "parentRefs"),
    ("expose-route-parent-unnamed", exposing(httpRoute={"parentRefs": [{"namespace": "gw"}]}), "name"),
    ("expose-route-scheme-ftp", exposing(httpRoute={**GW, "scheme": "ftp"}), "scheme"),
    ("expose-ingress-path-relative", exposing(ingress={"path": "v1"}), "ingress.path"),
    ("expose-ingress-host-wildcard-inside", exposing(ingress={"host": "a.*.example.com"}), "ingress.host"),
    ("expose-ingress-class-uppercase", exposing(ingress={"className": "Nginx"}), "className"),
    ("expose-ingress-host-ip", exposing(ingress={"host": "10.0.0.1"}), "ingress.host"),
    ("service-port-metrics", chute_with(service={"port": 9090}), "service.port"),
    ("service-port-admin", chute_with(service={"port": 9091}), "service.port"),
    ("expose-pool-picker-without-port", exposing(inferencePool={"endpointPicker": {"name": "epp"}}), "port"),
    (
        "expose-pool-picker-failure-mode",
        exposing(inferencePool={"endpointPicker": {"name": "epp", "port": 9002, "failureMode": "Retry"}}),
        "failureMode",
    ),
    ("expose-unknown-kind", exposing(service={}), "service"),
]

# Refused by the API server's list types (set, map keys); the offline parser leaves duplicates to it.
DUPLICATES: list[tuple[str, dict[str, Any], str]] = [
    ("include-duplicate", selecting(include=["h100", "h100"]), "include"),
    ("cords-duplicate", chute_with(cords=[{"path": "/x"}, {"path": "/x"}]), "cords"),
    ("env-duplicate", chute_with(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]), "env"),
]

# Valid to the schema; only the operator (with its GPU catalog) can tell: Ready=False, reason InvalidSpec,
# with this text (the field) in the message.
JUDGED_BY_OPERATOR: list[tuple[str, dict[str, Any], str]] = [
    ("gpu-unknown-include", selecting(include=["b999"]), "spec.nodeSelector.include"),
    ("gpu-unknown-exclude", selecting(exclude=["tpu_v5"]), "spec.nodeSelector.exclude"),
    ("gpu-too-small-for-vram", selecting(include=["l4"], minVramGbPerGpu=80), "minVramGbPerGpu=80"),
    ("gpu-vram-above-catalog", selecting(minVramGbPerGpu=1000), "minVramGbPerGpu=1000"),
    (
        "gpu-included-all-too-small",
        selecting(include=["l4", "a10", "a4000"], minVramGbPerGpu=48),
        "spec.nodeSelector admits no GPU",
    ),
    (
        "gpu-eight-of-unknown",
        selecting(gpuCount=8, include=["h100", "gb300"]),
        "spec.nodeSelector.include: unknown GPU gb300",
    ),
]
