"""Scale to zero and back: when an idle Chute goes to zero, when it wakes, and where its Service
sends traffic meanwhile. Pure: objects in, decisions and manifests out.

One writer of ``spec.replicas`` at a time. Between 1 and N the HPA owns it. To go to zero the
operator applies ``replicas: 0`` with its own field manager (``<field manager>-zero``, forced: it
takes the field from the HPA, which then stands still, as it does for KEDA). To wake, that manager
applies nothing: the field it solely owned is removed, the Deployment defaults it to 1 and the HPA
owns it again from its next scale.

While a Chute with ``minInstances: 0`` has no ready replica, an EndpointSlice the operator owns adds
the activator's pods to the Chute's Service (as Knative swaps endpoints), on the Chute's own port of
the activator (``activator_ports.py``): the activator knows the Chute by that port. The slice is
deleted once a replica is ready, so the activator is out of the data path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from chute_operator.conditions import parse_time
from chute_operator.wiring import ACTIVATOR_SLICE_SUFFIX as ACTIVATOR_SLICE_SUFFIX
from chute_operator.workload import Workload
from chute_shared.cluster import CHUTE_LABEL, MANAGED_BY, WAKE_ANNOTATION
from chute_shared.ports import SERVING_PORT_NAME

ASLEEP_ANNOTATION = "chutes.ai/scaled-to-zero-at"
"""Set on the Deployment, with ``replicas: 0``, by the operator's scale-to-zero field manager."""
ZERO_MANAGER_SUFFIX = "-zero"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONFIRM_MAX_AGE = timedelta(seconds=2)
"""How old a sidecar's reading may be to confirm a sleep: read in the reconcile that decides it."""
SLICE_MANAGER = "chute-operator"
"""Not the EndpointSlice controller's value, so it leaves this slice alone."""


class Action(Enum):
    STAY = "stay"
    SLEEP = "sleep"
    WAKE = "wake"


@dataclass(frozen=True)
class Activator:
    """The activator's ready pods, as the operator last saw them."""

    addresses: tuple[str, ...]


class Unread(Enum):
    UNREAD = "unread"


UNREAD = Unread.UNREAD
"""The activator's endpoints have not been read yet (the operator just started or became leader):
every activator slice is left as it is, neither applied nor deleted."""


class NoActivator(Enum):
    ABSENT = "absent"


ABSENT = NoActivator.ABSENT
"""No activator is configured (the chart's activator turned off, or never installed): a Chute at zero
could never be woken by a request, so it wakes, and none goes to zero."""
ActivatorReading = Activator | None | Unread | NoActivator
"""What the operator knows of the activator: its ready pods; None (read: it has no ready pod); UNREAD;
or ABSENT (none configured)."""


@dataclass(frozen=True)
class Reading:
    """One pod's sidecar read just before a sleep: its own ``idle_secs`` (None: busy or not read)."""

    idle_seconds: float | None
    read_at: datetime
    """When the read began (wall clock)."""


def asleep_since(deployment: Mapping[str, Any] | None) -> datetime | None:
    """When the operator scaled the Deployment to zero, if it is there now."""
    if not deployment or (deployment.get("spec") or {}).get("replicas") != 0:
        return None
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    return parse_time(annotations.get(ASLEEP_ANNOTATION))


def wake_requested_at(chute: Mapping[str, Any]) -> datetime | None:
    return parse_time(((chute.get("metadata") or {}).get("annotations") or {}).get(WAKE_ANNOTATION))


def _ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ready_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [pod for pod in pods if _ready(pod)]


def idle_for(
    pods: Iterable[Mapping[str, Any]], idle_seconds: Callable[[str, str], float | None]
) -> float | None:
    """How long every pod has served nothing: the least idle time of all pods. None when any pod is
    not ready or has no fresh reading (a loading or unmeasured replica is never called idle)."""
    pods = list(pods)
    if not pods:
        return None
    least: float | None = None
    for pod in pods:
        meta = pod.get("metadata") or {}
        idle = idle_seconds(meta.get("namespace", ""), meta.get("name", "")) if _ready(pod) else None
        if idle is None:
            return None
        least = idle if least is None else min(least, idle)
    return least


def _has_pods(activator: ActivatorReading) -> bool:
    return isinstance(activator, Activator) and bool(activator.addresses)


def confirmed_idle(
    pods: Iterable[Mapping[str, Any]], readings: Mapping[str, Reading], window: float, now: datetime
) -> bool:
    """Whether every pod's sidecar, read at most CONFIRM_MAX_AGE before ``now``, itself said it had
    served nothing for ``window`` seconds: a reading taken after the window ended, so a request that
    began before it shows (busy, or idle since it ended). ``readings`` by pod name. The metrics API's
    readings are up to 10 s old and a request that began since is invisible in them: they only say
    when to take these."""
    pods = list(pods)
    if not pods:
        return False
    for pod in pods:
        reading = readings.get((pod.get("metadata") or {}).get("name", ""))
        if not _ready(pod) or reading is None or reading.idle_seconds is None:
            return False
        if not timedelta(0) <= now - reading.read_at <= CONFIRM_MAX_AGE or reading.idle_seconds < window:
            return False
    return True


def decide(
    workload: Workload | None,
    chute: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    idle_seconds: Callable[[str, str], float | None],
    activator: ActivatorReading,
    has_port: bool = True,
) -> Action:
    """What the scale-to-zero field manager does now (level-based: from the objects alone).
    ``has_port``: the Chute has its port on the activator; a Chute at zero without one (the range
    narrowed, or full) cannot be reached there, so it wakes, and one awake never sleeps."""
    asleep = asleep_since(deployment)
    may_sleep = workload is not None and workload.scale_to_zero
    if asleep is not None:
        woken = wake_requested_at(chute)
        unreachable = (isinstance(activator, Activator) and not has_port) or activator is ABSENT
        if not may_sleep or unreachable or (woken is not None and woken > asleep):
            return Action.WAKE
        return Action.STAY
    if not may_sleep or workload is None or deployment is None or not _has_pods(activator) or not has_port:
        return Action.STAY  # never to zero without a known activator to hold the next request
    if ((deployment.get("spec") or {}).get("replicas") or 0) < 1:
        return Action.STAY  # at zero by hand: not ours to manage
    idle = idle_for(pods, idle_seconds)
    if idle is not None and idle >= workload.shutdown_after_seconds:
        return Action.SLEEP
    return Action.STAY


def sleep_manifest(deployment: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """What the scale-to-zero field manager applies to go to zero."""
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "annotations": {ASLEEP_ANNOTATION: now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        },
        "spec": {"replicas": 0},
    }


def wake_manifest(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What it applies to wake: nothing, so ``replicas`` (which it solely owned) defaults to 1."""
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }


def wants_activator(
    workload: Workload | None, deployment: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]
) -> bool:
    """Whether the Chute's Service should reach the activator: it may be at zero and nothing serves."""
    if workload is None or not workload.scale_to_zero:
        return False
    return asleep_since(deployment) is not None or not ready_pods(pods)


def activator_slice(workload: Workload, activator: Activator, port: int) -> dict[str, Any]:
    """The EndpointSlice that adds the activator's pods, on the Chute's ``port``, to its Service."""
    metadata: dict[str, Any] = {
        "name": workload.name + ACTIVATOR_SLICE_SUFFIX,
        "namespace": workload.namespace,
        "labels": {
            SERVICE_NAME_LABEL: workload.name,
            SLICE_MANAGED_BY_LABEL: SLICE_MANAGER,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            CHUTE_LABEL: workload.name,
        },
    }
    if workload.owner:
        metadata["ownerReferences"] = [workload.owner]
    ipv6 = any(":" in address for address in activator.addresses)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv6" if ipv6 else "IPv4",
        "ports": [{"name": SERVING_PORT_NAME, "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [address], "conditions": {"ready": True}} for address in sorted(activator.addresses)
        ],
    }


def activator_from_slices(slices: Iterable[Mapping[str, Any]]) -> Activator | None:
    """The activator's ready pods, from its Service's EndpointSlices (whatever port the Service
    publishes: each Chute reaches the activator on a port of its own)."""
    addresses: set[str] = set()
    for piece in slices:
        for endpoint in piece.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating"):
                continue
            addresses.update(endpoint.get("addresses") or [])
    return Activator(tuple(sorted(addresses))) if addresses else None
