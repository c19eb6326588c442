"""Resolve ``spec.expose`` into what the HTTPRoute, Ingress and InferencePool templates write, and the
Chute's external address. Pure: no I/O.

Every object reaches the serving port only: the Service's serving port (by number for an HTTPRoute,
as the Gateway API requires, by name for an Ingress), or the sidecar's serving port for an
InferencePool, whose pods are selected by the Chute's label alone (never a version or a pod-template
hash, which change at every rollout).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chute_operator.api import Cord
from chute_operator.api.expose import Expose, HttpRoute, InferencePool, Ingress
from chute_shared.cluster import CHUTE_LABEL
from chute_shared.ports import SERVING_PORT_NAME, SIDECAR_PORT

INFERENCE_GROUP = "inference.networking.k8s.io"
ROUTE_TIMEOUT_MARGIN_SECONDS = 5
"""A route waits this much longer than the Chute's sidecar: the sidecar answers first (its 504 says
why) and a stream is cut by the sidecar, not by a gateway a moment before."""

EXPOSED_KINDS = ("InferencePool", "HTTPRoute", "Ingress")
"""The kinds ``spec.expose`` renders, in apply order (the pool before the route that sends to it)."""


@dataclass(frozen=True)
class Exposure:
    """What the templates read of ``spec.expose`` (None: not asked for), and the external addresses."""

    http_route: dict[str, Any] | None = None
    ingress: dict[str, Any] | None = None
    inference_pool: dict[str, Any] | None = None
    urls: tuple[tuple[str, str], ...] = ()
    """(kind, URL) of each object that gives an external address, the preferred first."""


def timeouts(request_timeout_seconds: int, held_seconds: float = 0) -> dict[str, str]:
    """Gateway API ``HTTPRouteRule.timeouts``: the try of one backend (``backendRequest``) lasts as long
    as the Chute lets one request run plus a margin; the whole request (``request``) that plus
    ``held_seconds`` (a Chute at zero: the activator's longest hold)."""
    backend = request_timeout_seconds + ROUTE_TIMEOUT_MARGIN_SECONDS
    return {"request": f"{math.ceil(backend + held_seconds)}s", "backendRequest": f"{backend}s"}


def _cord_match(cord: Cord) -> dict[str, Any]:
    """A cord's match: Exact, or PathPrefix for a cord ending in '*' (without it), with its method."""
    if cord.path.endswith("*"):
        prefix = cord.path[:-1].rstrip("/") or "/"
        return {"path": {"type": "PathPrefix", "value": prefix}, "method": cord.method}
    return {"path": {"type": "Exact", "value": cord.path}, "method": cord.method}


def http_route(
    route: HttpRoute, name: str, service_port: int, pool: bool, cords: Sequence[Cord], limits: dict[str, str]
) -> dict[str, Any]:
    """The HTTPRoute's spec: its parents, host names and one rule to the Service (or the pool)."""
    if route.match_cords:
        matches = [_cord_match(cord) for cord in cords] or [{"path": {"type": "PathPrefix", "value": "/"}}]
    else:
        matches = [{"path": {"type": "PathPrefix", "value": route.path or "/"}}]
    backend: dict[str, Any] = (
        {"group": INFERENCE_GROUP, "kind": "InferencePool", "name": name}
        if pool
        else {"name": name, "port": service_port}
    )
    rule: dict[str, Any] = {"matches": matches, "backendRefs": [backend], "timeouts": limits}
    if route.rewrite_prefix is not None:
        rewrite = {"type": "ReplacePrefixMatch", "replacePrefixMatch": route.rewrite_prefix}
        rule["filters"] = [{"type": "URLRewrite", "urlRewrite": {"path": rewrite}}]
    spec: dict[str, Any] = {
        "parentRefs": [ref.model_dump(by_alias=True, exclude_none=True) for ref in route.parent_refs],
        "rules": [rule],
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return spec


def ingress(spec: Ingress, name: str) -> dict[str, Any]:
    """The Ingress's class, TLS and its one rule to the Service's serving port (by name)."""
    path = {
        "path": spec.path,
        "pathType": "Prefix",
        "backend": {"service": {"name": name, "port": {"name": SERVING_PORT_NAME}}},
    }
    rule: dict[str, Any] = {"http": {"paths": [path]}}
    if spec.host:
        rule["host"] = spec.host
    body: dict[str, Any] = {"rules": [rule]}
    if spec.class_name:
        body["ingressClassName"] = spec.class_name
    if spec.tls_secret_name:
        body["tls"] = [{"secretName": spec.tls_secret_name, **({"hosts": [spec.host]} if spec.host else {})}]
    return {"spec": body, "annotations": dict(spec.annotations)}


def inference_pool(spec: InferencePool, name: str) -> dict[str, Any]:
    """The pool's selector (the Chute's label only), target port (the sidecar's serving port) and picker."""
    body: dict[str, Any] = {
        "selector": {"matchLabels": {CHUTE_LABEL: name}},
        "targetPorts": [{"number": SIDECAR_PORT}],
    }
    picker = spec.endpoint_picker
    if picker is not None:
        ref: dict[str, Any] = {"name": picker.name, "port": {"number": picker.port}}
        if picker.failure_mode:
            ref["failureMode"] = picker.failure_mode
        body["endpointPickerRef"] = ref
    return body


def _suffix(path: str | None) -> str:
    return "" if not path or path == "/" else path.rstrip("/")


def external_urls(expose: Expose) -> tuple[tuple[str, str], ...]:
    """The HTTPRoute's (its first host name without a wildcard, its path), then the Ingress's (its
    host, https with a TLS Secret); an object without a host name gives none."""
    urls: list[tuple[str, str]] = []
    route = expose.http_route
    host = next((h for h in route.hostnames if not h.startswith("*")), None) if route else None
    if route and host:
        urls.append(("HTTPRoute", f"{route.scheme}://{host}{_suffix(route.path)}"))
    entry = expose.ingress
    if entry and entry.host and not entry.host.startswith("*"):
        scheme = "https" if entry.tls_secret_name else "http"
        urls.append(("Ingress", f"{scheme}://{entry.host}{_suffix(entry.path)}"))
    return tuple(urls)


def resolve_expose(
    expose: Expose | None,
    name: str,
    service_port: int,
    cords: Sequence[Cord],
    request_timeout_seconds: int,
    held_seconds: float,
) -> Exposure:
    """What ``spec.expose`` asks for; ``held_seconds``: how long the activator may hold a request for
    this Chute (0 unless it may be at zero)."""
    if expose is None:
        return Exposure()
    pool = expose.inference_pool
    route = expose.http_route
    return Exposure(
        http_route=http_route(
            route,
            name,
            service_port,
            pool is not None,
            cords,
            timeouts(request_timeout_seconds, held_seconds),
        )
        if route
        else None,
        ingress=ingress(expose.ingress, name) if expose.ingress else None,
        inference_pool=inference_pool(pool, name) if pool else None,
        urls=external_urls(expose),
    )


def sends_to_pool(route: Mapping[str, Any]) -> bool:
    """Whether an HTTPRoute (a manifest or the live object) sends to an InferencePool."""
    rules = (route.get("spec") or {}).get("rules") or []
    return any(
        ref.get("kind") == "InferencePool" and ref.get("group") == INFERENCE_GROUP
        for rule in rules
        for ref in rule.get("backendRefs") or []
    )


def via_service(route: Mapping[str, Any], service: str, port: int) -> dict[str, Any]:
    """A copy of the Chute's HTTPRoute that sends to its Service's serving port instead of its
    InferencePool: while the Chute may be at zero its pool has no pod, and its Service has the
    activator (scale-to-zero.md)."""
    result = copy.deepcopy(dict(route))
    for rule in (result.get("spec") or {}).get("rules") or []:
        rule["backendRefs"] = [
            {"name": service, "port": port} if ref.get("kind") == "InferencePool" else ref
            for ref in rule.get("backendRefs") or []
        ]
    return result
