"""Coexisting with another custom metrics adapter: what is forwarded to it, and how. Pure.

APIServices are per group *and version*: prometheus-adapter's Helm chart registers
``v1beta1.custom.metrics.k8s.io`` only, the operator ``v1beta2``, and the HPA controller asks the
preferred version (v1beta2) for every metric. The operator answers the Chute metrics itself and
forwards the rest, through the kube-apiserver, to whatever serves v1beta1 (:func:`forward_target`):
the request becomes a v1beta1 one (:func:`v1beta1_path`, :func:`forwarded_query`), the answer a
v1beta2 one again (:func:`to_v1beta2`; the two versions differ only in a MetricValue's fields).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chute_operator.metricsapi.responses import GROUP, GROUP_VERSION, VERSION

LEGACY_VERSION = "v1beta1"
LEGACY_API_SERVICE = f"{LEGACY_VERSION}.{GROUP}"
"""The APIService of the version other adapters register (prometheus-adapter's Helm chart: only it)."""
OWN_API_SERVICE = f"{VERSION}.{GROUP}"
LEGACY_PREFIX = f"/apis/{GROUP}/{LEGACY_VERSION}"
QUERY_PARAMETERS = ("labelSelector", "metricLabelSelector")
"""The query parameters of a custom metrics request (MetricListOptions), the same in both versions."""


@dataclass(frozen=True)
class MetricPath:
    """A custom metrics request as the kube-apiserver's request info reads it (what it authorized,
    and what the operator checks again): ``namespaces/NS/pods/*/METRIC`` is resource ``pods``, name
    ``*``, subresource ``METRIC`` in namespace NS; ``namespaces/NS/metrics/METRIC`` (a metric of the
    namespace itself) is resource ``metrics``, name ``METRIC``."""

    namespace: str
    resource: str
    name: str
    subresource: str


NAMESPACE_SUBRESOURCES = ("status", "finalize")


def parse_path(tail: str) -> MetricPath | None:
    """The path after ``/apis/custom.metrics.k8s.io/VERSION/``, or None when it names no metric
    (``namespaces/NS/RESOURCE/NAME/METRIC``, ``namespaces/NS/metrics/METRIC``, ``RESOURCE/NAME/METRIC``)."""
    parts = tail.strip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    metric = (
        (len(parts) == 5 and parts[0] == "namespaces")
        or (len(parts) == 4 and parts[0] == "namespaces" and parts[2] == "metrics")
        or (len(parts) == 3)
    )
    if not metric:
        return None
    namespace = ""
    if parts[0] == "namespaces":  # as k8s.io/apiserver's RequestInfoFactory
        namespace = parts[1]
        if parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    parts += ["", "", ""]
    return MetricPath(namespace, parts[0], parts[1], parts[2])


def v1beta1_path(tail: str) -> str | None:
    """The same request on v1beta1 (the path after the version, as :func:`parse_path` reads it), each
    segment escaped again; None when it names no metric."""
    if parse_path(tail) is None:
        return None
    segments = tail.strip("/").split("/")
    return LEGACY_PREFIX + "/" + "/".join(urllib.parse.quote(s, safe="*:") for s in segments)


def forwarded_query(query: Mapping[str, str]) -> dict[str, str]:
    """The request's selectors, nothing else (no watch, no other parameter reaches the adapter)."""
    return {key: query[key] for key in QUERY_PARAMETERS if query.get(key)}


class Malformed(ValueError):
    """A v1beta1 MetricValueList whose fields are not of the API's types (the message says which)."""


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, for a message: ``an object``, ``an array``, ``an int``..."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an int"}
    return "null" if value is None else kinds.get(type(value), "a number")


def _field(document: Mapping[str, Any], key: str, *types: type) -> Any:
    value = document.get(key)
    if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
        raise Malformed(f"{key} is {json_kind(value)}")
    return value


def to_v1beta2(document: Mapping[str, Any]) -> dict[str, Any]:
    """A v1beta1 MetricValueList as v1beta2 (a MetricValue's ``metricName`` and ``selector`` become
    ``metric: {name, selector}``, ``window`` becomes ``windowSeconds``); anything else (a Status)
    as it is. :class:`Malformed` when a field of the list is not of its type."""
    if document.get("kind") != "MetricValueList":
        return dict(document)
    return {
        "kind": "MetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": _field(document, "metadata", dict) or {},
        "items": [_value_to_v1beta2(item) for item in _field(document, "items", list) or []],
    }


def _value_to_v1beta2(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Malformed(f"an item is {json_kind(item)}")
    metric: dict[str, Any] = {"name": _field(item, "metricName", str) or ""}
    if _field(item, "selector", dict) is not None:
        metric["selector"] = item["selector"]
    value: dict[str, Any] = {
        "describedObject": _field(item, "describedObject", dict) or {},
        "metric": metric,
        "timestamp": _field(item, "timestamp", str),
        "value": _field(item, "value", str, int, float),
    }
    if _field(item, "window", int) is not None:
        value["windowSeconds"] = item["window"]
    return value


def to_v1beta1(document: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_v1beta2` (what an adapter serving v1beta1 answers; for tests)."""
    if document.get("kind") != "MetricValueList":
        return dict(document)
    items = []
    for item in document.get("items") or []:
        metric = item.get("metric") or {}
        value: dict[str, Any] = {
            "describedObject": item.get("describedObject") or {},
            "metricName": metric.get("name", ""),
            "timestamp": item.get("timestamp"),
            "value": item.get("value"),
            "selector": metric.get("selector"),
        }
        if item.get("windowSeconds") is not None:
            value["window"] = item["windowSeconds"]
        items.append(value)
    return {
        "kind": "MetricValueList",
        "apiVersion": f"{GROUP}/{LEGACY_VERSION}",
        "metadata": document.get("metadata") or {},
        "items": items,
    }


@dataclass(frozen=True)
class Target:
    """Whether requests are forwarded to the v1beta1 APIService, and why (for the log)."""

    forward: bool
    why: str


def _service(api_service: Mapping[str, Any]) -> tuple[str, str] | None:
    target = (api_service.get("spec") or {}).get("service") or {}
    if not target.get("name"):
        return None
    return str(target.get("namespace") or ""), str(target["name"])


def _available(api_service: Mapping[str, Any]) -> tuple[bool, str]:
    for condition in (api_service.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Available":
            return condition.get("status") == "True", str(condition.get("message") or "")
    return False, "no Available condition yet"


def forward_target(api_service: Mapping[str, Any] | None, own: tuple[str, str]) -> Target:
    """Whether ``v1beta1.custom.metrics.k8s.io`` (as read; None: missing) is another adapter's,
    Available, so requests the operator cannot answer go there; never when it names the operator's
    own Service ``own`` (namespace, name): that would send requests back to the operator."""
    if api_service is None:
        return Target(False, f"APIService {LEGACY_API_SERVICE} does not exist")
    service = _service(api_service)
    if service is None:
        return Target(False, f"APIService {LEGACY_API_SERVICE} names no Service")
    where = f"{service[0]}/{service[1]}"
    if service == own:
        return Target(False, f"APIService {LEGACY_API_SERVICE} names this operator's Service {where}")
    available, message = _available(api_service)
    if not available:
        return Target(False, f"APIService {LEGACY_API_SERVICE} (Service {where}) is not Available: {message}")
    return Target(True, f"APIService {LEGACY_API_SERVICE} (Service {where})")


def rival(api_service: Mapping[str, Any] | None, own: tuple[str, str]) -> str | None:
    """``namespace/name`` of the Service that ``v1beta2.custom.metrics.k8s.io`` names when it is
    not the operator's ``own``: another adapter serves the version the HPA asks (the Chutes' HPAs
    then cannot read their metric); None when it is the operator's, or missing."""
    service = _service(api_service) if api_service is not None else None
    if service is None or service == own:
        return None
    return f"{service[0]}/{service[1]}"


def rival_message(where: str, own: tuple[str, str]) -> str:
    """What the operator logs when :func:`rival` found another adapter's v1beta2 APIService."""
    return (
        f"APIService {OWN_API_SERVICE} names Service {where}, not the metrics API's {own[0]}/{own[1]}: "
        "another custom metrics adapter serves custom.metrics.k8s.io/v1beta2, so the HPAs of Chutes "
        "ask it, not the operator, and the operator leaves that APIService alone. Either set "
        "metricsApi.enabled=false and serve chute_utilization_ratio from that adapter (docs/deployment.md), "
        f"or remove that adapter's {OWN_API_SERVICE} APIService (keep its {LEGACY_API_SERVICE}) and "
        "install this chart's: the operator then forwards every metric it does not serve to it"
    )
