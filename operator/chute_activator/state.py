"""What the activator knows of each Chute: whether it exists, its ready endpoints, why it cannot wake."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    cluster_ips: tuple[str, ...] = field(default=())
    """The Chute Service's addresses, so a request whose Host is a ClusterIP finds its Chute."""
    source: str = ""
    """Where the endpoints come from: ``EndpointSlice`` (the kubelet's readiness, via the EndpointSlice
    controller) or ``sidecar`` (the pod's sidecar answered ``ready`` on its serving port first)."""


def key_from_host(host: str, known: dict[Key, ChuteState], by_ip: dict[str, Key]) -> Key | None:
    """The Chute a request is for, from its Host header: ``NAME.NAMESPACE[.svc[.cluster.local]]``,
    a Service ClusterIP, or a bare ``NAME`` that exactly one namespace has."""
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name in by_ip:
        return by_ip[name]
    labels = name.rstrip(".").split(".")
    if len(labels) >= 2 and (len(labels) == 2 or labels[2] == "svc"):
        return (labels[1], labels[0])
    if len(labels) == 1 and labels[0]:
        matches = [key for key in known if key[1] == labels[0]]
        if len(matches) == 1:
            return matches[0]
    return None
