"""What the activator derives from the cluster's objects (plain dicts): a Chute's ready endpoints,
whether it can wake, its pods' serving addresses. Pure: no I/O, no clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chute_activator.state import ChuteState, Key
from chute_shared import reasons
from chute_shared.cluster import ACTIVATOR_PORT_STATUS, CHUTE_LABEL, SIDECAR_CONTAINER
from chute_shared.ports import SERVING_PORT_NAME

CONTROLLER_SLICES = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
"""Only the slices Kubernetes makes from the pods: never the one pointing at the activator itself."""


def ready_endpoints(slices: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """``host:port`` of every ready, not terminating endpoint of the serving port."""
    found: list[str] = []
    for piece in slices:
        port = next(
            (p.get("port") for p in piece.get("ports") or [] if p.get("name") == SERVING_PORT_NAME), None
        )
        if not port:
            continue
        for endpoint in piece.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating"):
                continue
            for address in endpoint.get("addresses") or []:
                found.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    return tuple(sorted(set(found)))


CANNOT_WAKE_REASONS = frozenset(
    {
        reasons.UNSCHEDULABLE,
        reasons.IMAGE_PULL_BACK_OFF,
        reasons.CRASH_LOOP_BACK_OFF,
        reasons.INVALID_SPEC,
        reasons.APPLY_FAILED,
        reasons.CHILD_CONFLICT,
    }
)
"""Degraded reasons that keep a woken Chute from serving until a person acts. Others (a readiness
probe failing while the model finishes loading, an OOM kill it restarts from) may pass by themselves:
held requests keep waiting for them, within their bounded wait."""


def cannot_wake(chute: dict[str, Any]) -> str | None:
    """The operator's Degraded condition, when its reason keeps the Chute from serving."""
    for condition in (chute.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == reasons.DEGRADED
            and condition.get("status") == "True"
            and condition.get("reason") in CANNOT_WAKE_REASONS
        ):
            reason, message = condition.get("reason") or reasons.DEGRADED, condition.get("message") or ""
            return f"{reason}: {message}" if message else reason
    return None


def load_seconds(chute: Mapping[str, Any]) -> float | None:
    """The Chute's model load time as the operator measured it (``status.loadSeconds``), if known: it
    outlives an activator restart and a Chute at zero."""
    value = (chute.get("status") or {}).get("loadSeconds")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def _positive_int(chute: Mapping[str, Any], field: str) -> int | None:
    value = (chute.get("spec") or {}).get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def max_body_bytes(chute: Mapping[str, Any]) -> int | None:
    """The Chute's body limit (``spec.maxRequestBodyBytes``), the sidecar's, if it is one."""
    return _positive_int(chute, "maxRequestBodyBytes")


def request_timeout_seconds(chute: Mapping[str, Any]) -> float | None:
    """The Chute's request timeout (``spec.requestTimeoutSeconds``), the sidecar's, if it is one."""
    value = _positive_int(chute, "requestTimeoutSeconds")
    return float(value) if value is not None else None


def activator_port(chute: Mapping[str, Any]) -> int | None:
    """The activator port the operator gave the Chute (``status.activatorPort``), if it is a port."""
    value = (chute.get("status") or {}).get(ACTIVATOR_PORT_STATUS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return None
    return value


def serving_address(pod: Mapping[str, Any]) -> str | None:
    """``host:port`` of a pod's sidecar serving port, when the pod may answer on it: it has an IP, is
    not terminating, and its sidecar container runs."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    sidecar = next((c for c in containers if c.get("name") == SIDECAR_CONTAINER), None)
    port = next(
        (
            p.get("containerPort")
            for p in (sidecar or {}).get("ports") or []
            if p.get("name") == SERVING_PORT_NAME
        ),
        None,
    )
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    running = any("running" in (s.get("state") or {}) for s in statuses if s.get("name") == SIDECAR_CONTAINER)
    if not port or not running:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def chute_state(
    chute: dict[str, Any] | None,
    slices: Iterable[dict[str, Any]],
    override: str | None = None,
    sidecar_ready: Iterable[str] = (),
) -> ChuteState | None:
    """What the activator needs of one Chute; None when the Chute is gone. ``sidecar_ready``: pods
    whose sidecar said ready before any slice did."""
    if chute is None or (chute.get("metadata") or {}).get("deletionTimestamp"):
        return None
    endpoints, source = ready_endpoints(slices), "EndpointSlice"
    if not endpoints:
        endpoints, source = tuple(sorted(set(sidecar_ready))), "sidecar"
    if endpoints and override:
        endpoints = (override,)
    return ChuteState(
        endpoints=endpoints,
        cannot_wake=None if endpoints else cannot_wake(chute),
        source=source if endpoints else "",
        load_seconds=load_seconds(chute),
        port=activator_port(chute),
        max_body_bytes=max_body_bytes(chute),
        request_timeout_seconds=request_timeout_seconds(chute),
        created=str((chute.get("metadata") or {}).get("creationTimestamp") or ""),
    )


def key_of(obj: dict[str, Any], name: str | None = None) -> Key:
    """``(namespace, name)`` of an object, or of ``name`` in its namespace."""
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), name or meta.get("name", ""))


def slice_labels() -> dict[str, Any]:
    """The label selector of the Chutes' slices that Kubernetes makes."""
    name, value = CONTROLLER_SLICES.split("=")
    return {name: value, CHUTE_LABEL: None}  # None: the label exists


def chute_of(piece: dict[str, Any]) -> str:
    """The name of the Chute an object belongs to (its label), or empty."""
    return ((piece.get("metadata") or {}).get("labels") or {}).get(CHUTE_LABEL, "")
