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
]
