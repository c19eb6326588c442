"""The documents the custom metrics API answers with. Pure: plain dicts in the API's JSON shape.

The shapes are those of ``k8s.io/metrics/pkg/apis/custom_metrics/v1beta2`` and the 404s those of
``sigs.k8s.io/custom-metrics-apiserver``, which the HPA controller's client reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chute_shared.metrics import UTILIZATION_METRIC

GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta2"
GROUP_VERSION = f"{GROUP}/{VERSION}"
METRICS = (UTILIZATION_METRIC,)
OPENAPI_V2: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "chute-operator custom metrics", "version": VERSION},
    "paths": {},
}
OPENAPI_V3_DISCOVERY: dict[str, Any] = {"paths": {}}


@dataclass(frozen=True)
class PodValue:
    """One pod's value of a metric and when it was read."""

    name: str
    value: float
    timestamp: float
    """Seconds since the epoch."""


def quantity(value: float) -> str:
    """A resource.Quantity in milli-units (what the HPA compares), e.g. 0.5 -> ``500m``, 2 -> ``2``."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [version], "preferredVersion": version}


def group_list() -> dict[str, Any]:
    """``/apis``."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def group() -> dict[str, Any]:
    """``/apis/custom.metrics.k8s.io``."""
    return {"kind": "APIGroup", "apiVersion": "v1", **api_group()}


def resource_list() -> dict[str, Any]:
    """``/apis/custom.metrics.k8s.io/v1beta2``: one resource per pod metric, as the HPA discovers it."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": f"pods/{metric}",
                "singularName": "",
                "namespaced": True,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
            for metric in METRICS
        ],
    }


def metric_value_list(
    namespace: str, metric: str, values: Iterable[PodValue], window_seconds: int
) -> dict[str, Any]:
    """The MetricValueList of pod values (the single-object form is a list of one)."""
    items = [
        {
            "describedObject": {"kind": "Pod", "namespace": namespace, "name": pod.name, "apiVersion": "v1"},
            "metric": {"name": metric},
            "timestamp": _time(pod.timestamp),
            "windowSeconds": window_seconds,
            "value": quantity(pod.value),
        }
        for pod in sorted(values, key=lambda pod: pod.name)
    ]
    return {"kind": "MetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metav1.Status failure."""
    document: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        document["details"] = details
    return document


def metric_not_found(resource: str, metric: str, name: str | None = None, why: str = "") -> dict[str, Any]:
    """404 as custom-metrics-apiserver words it (the HPA quotes it in its ScalingActive condition)."""
    target = f"{resource} {name}" if name else resource
    message = f"the server could not find the metric {metric} for {target}"
    details: dict[str, Any] = {"group": GROUP, "kind": metric}
    if name:
        details["name"] = name
    return status(404, "NotFound", f"{message}: {why}" if why else message, details)


def not_found(path: str) -> dict[str, Any]:
    return status(404, "NotFound", f"the server could not find the requested resource ({path})")


def bad_request(message: str) -> dict[str, Any]:
    return status(400, "BadRequest", message)


def unauthorized(message: str) -> dict[str, Any]:
    return status(401, "Unauthorized", message)


def forbidden(user: str, verb: str, path: str, why: str = "") -> dict[str, Any]:
    message = f'{user!r} cannot {verb} path "{path}"' + (f": {why}" if why else "")
    return status(403, "Forbidden", message)
