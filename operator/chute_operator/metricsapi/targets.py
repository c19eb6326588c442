"""Which pods' sidecars the scraper may read, and at which address. Pure.

Only ready pods on real nodes are read. Pods on simulated (kwok) nodes have addresses no host owns,
so they are never dialled; a node not known yet is not dialled either (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from typing import Any

from chute_shared.cluster import SIDECAR_CONTAINER
from chute_shared.ports import METRICS_PORT_NAME

SIMULATED_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SIMULATED_NODE_LABELS = (("chutes.ai/simulated", "true"), ("type", "kwok"))
"""Labels of simulated nodes (the local cluster's own, and kwok's convention)."""

SKIPPED_NOT_READY = "not ready"
SKIPPED_SIMULATED = "on a simulated (kwok) node, never dialled"
SKIPPED_NODE_UNKNOWN = "its node is not known yet"
SKIPPED_NO_ADDRESS = "no pod IP or sidecar metrics port"
REPLANNED = frozenset({SKIPPED_NOT_READY, SKIPPED_NO_ADDRESS})
"""Skips a pod may leave between rounds (ready since, its IP since): planned again before an answer,
such a pod costs no read while the skip still holds."""


@dataclass(frozen=True)
class Target:
    """A sidecar to read: the pod and ``host:port``."""

    namespace: str
    name: str
    address: str


def is_simulated_node(node: Mapping[str, Any]) -> bool:
    """Whether a Node object is simulated: kwok's annotation ``kwok.x-k8s.io/node``, or a label of
    :data:`SIMULATED_NODE_LABELS`."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    if SIMULATED_NODE_ANNOTATION in (meta.get("annotations") or {}):
        return True
    return any(labels.get(key) == value for key, value in SIMULATED_NODE_LABELS)


def is_ready(pod: Mapping[str, Any]) -> bool:
    """Running, not being deleted, and its Ready condition True."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def metrics_port(pod: Mapping[str, Any]) -> int | None:
    """The sidecar's metrics port, by name, from the pod spec (native sidecar or plain container)."""
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") != SIDECAR_CONTAINER:
            continue
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        port = ports.get(METRICS_PORT_NAME)
        if isinstance(port, int):
            return port
    return None


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    """Whether ``host:port`` names a loopback address (what test-only overrides may point at).
    Remembered: every round checks each entry of the test-only map again."""
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def plan(
    pods: Iterable[Mapping[str, Any]],
    node_is_simulated: Callable[[str], bool | None],
    test_only_addresses: Mapping[str, str] | None = None,
) -> tuple[list[Target], dict[tuple[str, str], str]]:
    """The targets to read now, and why every other pod is skipped.

    ``node_is_simulated(name)`` answers None for a node not looked up yet. ``test_only_addresses``
    (``namespace/pod`` -> loopback ``host:port``) lets tests read real sidecar processes on loopback
    in place of pods on simulated nodes; non-loopback entries are ignored.
    """
    overrides = {k: v for k, v in (test_only_addresses or {}).items() if is_loopback(v)}
    targets: list[Target] = []
    skipped: dict[tuple[str, str], str] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if not is_ready(pod):
            skipped[key] = SKIPPED_NOT_READY
            continue
        override = overrides.get(f"{key[0]}/{key[1]}")
        if override:
            targets.append(Target(*key, override))
            continue
        simulated = node_is_simulated((pod.get("spec") or {}).get("nodeName") or "")
        if simulated is None:
            skipped[key] = SKIPPED_NODE_UNKNOWN
            continue
        if simulated:
            skipped[key] = SKIPPED_SIMULATED
            continue
        ip, port = (pod.get("status") or {}).get("podIP"), metrics_port(pod)
        if not ip or port is None:
            skipped[key] = SKIPPED_NO_ADDRESS
            continue
        targets.append(Target(*key, _host_port(ip, port)))
    return targets, skipped
