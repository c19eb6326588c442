"""What the activator knows of each Chute: whether it exists, its ready endpoints, why it cannot wake,
and the activator port its requests arrive on."""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]
"""(namespace, name) of a Chute."""


@dataclass(frozen=True, slots=True)
class ChuteState:
    """One Chute as last seen by the activator's source (the Kubernetes API, or a test)."""

    exists: bool = True
    endpoints: tuple[str, ...] = ()
    """``host:port`` of each ready replica's serving port."""
    cannot_wake: str | None = None
    """Why the Chute cannot get a ready replica (a reason and message from the operator), if it cannot."""
    load_seconds: float | None = None
    """How long the Chute's model took to load, as the operator measured it (the Chute's
    ``status.loadSeconds``; None: unknown)."""
    port: int | None = None
    """The activator port the operator gave the Chute (its ``status.activatorPort``): a connection to
    it is for this Chute. None: none yet (no request can arrive for it)."""
    created: str = ""
    """The Chute's creationTimestamp: when two Chutes claim one port (a status written by hand), the
    older keeps it, as the operator decides."""
    source: str = ""
    """Where the endpoints come from: ``EndpointSlice`` (the kubelet's readiness, via the EndpointSlice
    controller) or ``sidecar`` (the pod's sidecar answered ``ready`` on its serving port first)."""


def port_owner(claims: dict[Key, str]) -> Key | None:
    """Of the Chutes claiming one port (key: creationTimestamp), the one that keeps it: the oldest,
    then the first by namespace and name (the operator's rule too)."""
    if not claims:
        return None
    return min(claims, key=lambda key: (claims[key] or "~", key))
