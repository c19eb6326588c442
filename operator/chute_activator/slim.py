"""What the activator keeps of each object it caches: the fields :mod:`chute_activator.derive` reads.

A Chute as the API server sends it holds its whole spec, every condition and its managedFields; the
activator reads of it two spec fields, three status fields and the Degraded condition. Kept whole,
the Chutes took most of the activator's memory at 4500 asleep (docs/benchmarks/fleet.md). Pure: the
tests run every reader of :mod:`chute_activator.derive` on full and slimmed objects alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chute_shared import reasons
from chute_shared.cluster import ACTIVATOR_PORT_STATUS, CHUTE_LABEL

Obj = dict[str, Any]

_METADATA = ("name", "namespace", "creationTimestamp", "deletionTimestamp")
_CONDITION = ("type", "status", "reason", "message")


def _pick(source: Any, fields: Iterable[str]) -> Obj:
    if not isinstance(source, Mapping):
        return {}
    return {field: source[field] for field in fields if field in source}


def _metadata(obj: Mapping[str, Any]) -> Obj:
    meta = obj.get("metadata") or {}
    kept = _pick(meta, _METADATA)
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if isinstance(labels, Mapping) and CHUTE_LABEL in labels:
        kept["labels"] = {CHUTE_LABEL: labels[CHUTE_LABEL]}
    return kept


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def slim_chute(chute: Mapping[str, Any]) -> Obj:
    """Its key and times, ``spec.maxRequestBodyBytes`` and ``requestTimeoutSeconds``, and of its status
    the activator port, the load time and the Degraded condition."""
    status = chute.get("status") or {}
    kept_status = _pick(status, ("loadSeconds", ACTIVATOR_PORT_STATUS))
    conditions = [
        c
        for c in _each(status.get("conditions") if isinstance(status, Mapping) else None, _CONDITION)
        if c.get("type") == reasons.DEGRADED
    ]
    if conditions:
        kept_status["conditions"] = conditions
    return {
        "metadata": _metadata(chute),
        "spec": _pick(chute.get("spec"), ("maxRequestBodyBytes", "requestTimeoutSeconds")),
        "status": kept_status,
    }


def _each(items: Any, fields: Iterable[str]) -> list[Obj]:
    return [_pick(item, fields) for item in _list(items) if isinstance(item, Mapping)]


def slim_slice(piece: Mapping[str, Any]) -> Obj:
    """Its key and Chute label, its ports' names and numbers, each endpoint's addresses and conditions."""
    return {
        "metadata": _metadata(piece),
        "ports": _each(piece.get("ports"), ("name", "port")),
        "endpoints": _each(piece.get("endpoints"), ("addresses", "conditions")),
    }


def _containers(spec: Any, field: str) -> list[Obj]:
    return [
        {
            **_pick(c, ("name",)),
            "ports": _each(c.get("ports"), ("name", "containerPort")),
        }
        for c in _list(spec.get(field) if isinstance(spec, Mapping) else None)
        if isinstance(c, Mapping)
    ]


def slim_pod(pod: Mapping[str, Any]) -> Obj:
    """Its key, Chute label and deletion; each container's name and ports; its IP, phase and each
    container's state."""
    status = pod.get("status") or {}
    kept_status = _pick(status, ("podIP", "phase"))
    for field in ("initContainerStatuses", "containerStatuses"):
        statuses = status.get(field) if isinstance(status, Mapping) else None
        kept_status[field] = _each(statuses, ("name", "state"))
    spec = pod.get("spec")
    return {
        "metadata": _metadata(pod),
        "spec": {field: _containers(spec, field) for field in ("initContainers", "containers")},
        "status": kept_status,
    }
