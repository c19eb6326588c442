"""Where a Chute's own HTTPRoute sends while it may be at zero. Pure.

A Chute with an InferencePool routes through it (the endpoint picker chooses the replica). But a pool
selects pods by label, and at zero it has none: the picker can only refuse. The Chute's Service has
the activator then (its EndpointSlice, zero.py), so while the Chute is at zero, has no ready replica
or is about to sleep, its HTTPRoute sends to the Service, and back to the pool once a replica is
ready. The route moves first, the replicas after: the operator sleeps a Chute only once its live
route no longer sends to the pool (plan.py), so no request meets an empty pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chute_operator.drift import stamped
from chute_operator.expose import via_service
from chute_operator.workload import Workload
from chute_operator.zero import Action, wants_activator


def route_via_service(
    workload: Workload | None,
    deployment: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    looks_idle: Action,
) -> bool:
    """Whether the Chute's HTTPRoute should send to its Service rather than its InferencePool: it
    renders both, may be at zero, and is at zero, has no ready replica, or is about to sleep."""
    if workload is None or workload.http_route is None or workload.inference_pool is None:
        return False
    if not workload.scale_to_zero:
        return False
    return looks_idle is Action.SLEEP or wants_activator(workload, deployment, pods)


def with_route_via_service(
    desired: Iterable[dict[str, Any]], workload: Workload
) -> tuple[dict[str, Any], ...]:
    """The desired children with the HTTPRoute sent to the Service (stamped again)."""
    return tuple(
        stamped(via_service(m, workload.name, workload.service["port"])) if m["kind"] == "HTTPRoute" else m
        for m in desired
    )
